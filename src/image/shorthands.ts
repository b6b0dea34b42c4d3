// Owns: what `image.base: debian-12` and friends mean: the distribution's cloud image, its
// checksum list, and how a mirror stands in for the distribution's server.
// Not: downloading (download.ts) or caching (cache.ts); not reading image.mirror or
// RUM_IMAGE_MIRROR (the caller passes the mirror in).
import { mirrorProblem } from '../config/image-source.js';
import { RumError } from '../errors.js';
import type { HashAlgo } from './sums.js';

export interface ResolvedImage {
  url: string; // the image
  sumsUrl: string; // the distribution's checksum list for it
  algo: HashAlgo; // the list's digest
  fileName: string; // the image's name in that list
}

interface Distribution {
  root: string; // what a mirror replaces; ends with '/'
  algo: HashAlgo;
  sums: string; // the checksum list's name, beside the image
}

// Debian's cloud images live under images/cloud/ on cloud.debian.org (cdimage mirrors carry the
// same tree as cdimage/cloud/); Ubuntu's are the whole of cloud-images.ubuntu.com.
const DEBIAN: Distribution = { root: 'https://cloud.debian.org/images/cloud/', algo: 'sha512', sums: 'SHA512SUMS' };
const UBUNTU: Distribution = { root: 'https://cloud-images.ubuntu.com/', algo: 'sha256', sums: 'SHA256SUMS' };

interface Shorthand {
  distro: Distribution;
  dir: string; // below distro.root, ends with '/'
  fileName: string;
  dated: Dated;
}

/** Where the fixed builds that `dir` moves between sit: directories beside it, one per build. */
interface Dated {
  parent: string; // below distro.root, ends with '/': the directory listing them
  build: RegExp; // a build's directory name
  fileName: (build: string) => string; // the image's name in that directory (and its checksum list)
}

// Debian: bookworm/20250115-1993/debian-12-genericcloud-amd64-20250115-1993.qcow2 beside
// bookworm/latest/debian-12-genericcloud-amd64.qcow2. Ubuntu: releases/24.04/release-20240423/
// with the same file name as in release/ (a respin gets a suffix: release-20240423.1).
const debianDated = (codename: string, version: string): Dated => ({
  parent: `${codename}/`,
  build: /^\d{8}-\d+$/,
  fileName: (build) => `debian-${version}-genericcloud-amd64-${build}.qcow2`,
});
const ubuntuDated = (version: string): Dated => ({
  parent: `releases/${version}/`,
  build: /^release-\d{8}(\.\d+)?$/,
  fileName: () => `ubuntu-${version}-server-cloudimg-amd64.img`,
});

// amd64 only. Debian: the `latest` genericcloud build (the cloud-init image without hardware
// drivers); it moves with each point release, so the cache keys it by its verified digest.
// Ubuntu: the `release` directory's server cloud image.
const SHORTHANDS: Record<string, Shorthand> = {
  'debian-12': { distro: DEBIAN, dir: 'bookworm/latest/', fileName: 'debian-12-genericcloud-amd64.qcow2', dated: debianDated('bookworm', '12') },
  'debian-13': { distro: DEBIAN, dir: 'trixie/latest/', fileName: 'debian-13-genericcloud-amd64.qcow2', dated: debianDated('trixie', '13') },
  'ubuntu-22.04': { distro: UBUNTU, dir: 'releases/22.04/release/', fileName: 'ubuntu-22.04-server-cloudimg-amd64.img', dated: ubuntuDated('22.04') },
  'ubuntu-24.04': { distro: UBUNTU, dir: 'releases/24.04/release/', fileName: 'ubuntu-24.04-server-cloudimg-amd64.img', dated: ubuntuDated('24.04') },
};

export const shorthandNames: readonly string[] = Object.keys(SHORTHANDS);

export function isShorthand(name: string): boolean {
  return Object.hasOwn(SHORTHANDS, name);
}

/**
 * The image a shorthand stands for.
 *
 * A mirror replaces the distribution's root (scheme, host and path prefix) for both the image
 * and its checksum list; the rest of the path is kept. The roots are:
 *   debian-*: https://cloud.debian.org/images/cloud/
 *   ubuntu-*: https://cloud-images.ubuntu.com/
 * so with mirror `http://10.0.0.5/cloud` (a trailing `/` is added when missing):
 *   debian-12    -> http://10.0.0.5/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2
 *                   http://10.0.0.5/cloud/bookworm/latest/SHA512SUMS
 *   ubuntu-24.04 -> http://10.0.0.5/cloud/releases/24.04/release/ubuntu-24.04-server-cloudimg-amd64.img
 *                   http://10.0.0.5/cloud/releases/24.04/release/SHA256SUMS
 * One mirror serves both families when it lays them out side by side like that. A mirror must be
 * an http(s) URL without query, fragment or credentials.
 */
export function resolveShorthand(name: string, mirror?: string): ResolvedImage {
  const s = shorthand(name);
  const root = rootFor(s.distro, mirror);
  return {
    url: root + s.dir + s.fileName,
    sumsUrl: root + s.dir + s.distro.sums,
    algo: s.distro.algo,
    fileName: s.fileName,
  };
}

/** A shorthand's fixed builds: the listing to find them in (through the mirror), and each
 * build's image, by its distribution's URL (what rum.lock records) and through the mirror. */
export interface DatedBuilds {
  listingUrl: string;
  isBuild(dirName: string): boolean;
  build(dirName: string): ResolvedImage & { canonicalUrl: string };
}

export function datedBuilds(name: string, mirror?: string): DatedBuilds {
  const s = shorthand(name);
  const root = rootFor(s.distro, mirror);
  return {
    listingUrl: root + s.dated.parent,
    isBuild: (dirName) => s.dated.build.test(dirName),
    build: (dirName) => {
      const path = `${s.dated.parent}${dirName}/`;
      const fileName = s.dated.fileName(dirName);
      return { url: root + path + fileName, canonicalUrl: s.distro.root + path + fileName, sumsUrl: root + path + s.distro.sums, algo: s.distro.algo, fileName };
    },
  };
}

/** The URL to fetch a distribution's file from: through the mirror when there is one. Other
 * URLs are left as they are (a mirror stands in for the distributions' servers only). */
export function throughMirror(url: string, mirror?: string): string {
  if (mirror === undefined || mirror === '') return url;
  for (const d of [DEBIAN, UBUNTU]) if (url.startsWith(d.root)) return mirrorRoot(mirror) + url.slice(d.root.length);
  return url;
}

/** Whether `url` is a file on a distribution's server that shorthands name (rum.lock's check). */
export function isDistributionUrl(name: string, url: string): boolean {
  return url.startsWith(shorthand(name).distro.root);
}

function rootFor(d: Distribution, mirror: string | undefined): string {
  return mirror === undefined || mirror === '' ? d.root : mirrorRoot(mirror);
}

function shorthand(name: string): Shorthand {
  const s = Object.hasOwn(SHORTHANDS, name) ? SHORTHANDS[name] : undefined;
  if (!s) {
    const near = didYouMean(name, shorthandNames);
    throw new RumError(
      'CONFIG_INVALID',
      `unknown image shorthand "${name}"`,
      near
        ? `did you mean ${near}? (known: ${shorthandNames.join(', ')})`
        : `known shorthands: ${shorthandNames.join(', ')}; or give an http(s) URL or a path`,
    );
  }
  return s;
}

/** The mirror as a base URL, judged as rum.yaml's image.mirror is (RUM_IMAGE_MIRROR comes here
 * unchecked). Its value is never quoted back: it may hold a password. */
function mirrorRoot(mirror: string): string {
  const problem = mirrorProblem(mirror);
  if (problem) throw new RumError('CONFIG_INVALID', `the image mirror is not usable: ${problem.message}`, `${problem.hint} (image.mirror or RUM_IMAGE_MIRROR)`);
  const href = new URL(mirror).href;
  return href.endsWith('/') ? href : `${href}/`;
}

/** The closest known name within a small edit distance, for "did you mean". */
export function didYouMean(input: string, known: readonly string[]): string | undefined {
  const wanted = input.toLowerCase();
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(wanted.length / 3)) + 1;
  for (const k of known) {
    const d = editDistance(wanted, k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
