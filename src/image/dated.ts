// Owns: finding the fixed, dated build that a shorthand's moving `latest` is: the newest builds
// in the mirror's directory listing whose checksum list gives the same digest. Not: fetching the
// image (cache.ts) or what a shorthand means (shorthands.ts).
import { fetchText, type DownloadOptions } from './download.js';
import { datedBuilds } from './shorthands.js';
import { findSum, type Checksum } from './sums.js';

// Distributions keep dozens of builds; `latest` is one of the newest few. Each look is one small
// checksum list.
const MAX_LOOKS = 8;

export type DatedBuild = { url: string; build: string; why?: undefined } | { url?: undefined; build?: undefined; why: string };

/**
 * The distribution's URL of the dated build of `name` whose image has `digest`, looked up
 * through `mirror`. Never throws for what the server lacks: says why instead (no listing, no
 * build with that digest among the newest), so that the caller can pin `latest` by its digest.
 */
export async function findDatedBuild(name: string, digest: Checksum, mirror: string | undefined, opts: Pick<DownloadOptions, 'signal' | 'retries' | 'backoffMs'> = {}): Promise<DatedBuild> {
  const builds = datedBuilds(name, mirror);
  let listing: string;
  try {
    listing = await fetchText(builds.listingUrl, opts);
  } catch (err) {
    if (opts.signal?.aborted) throw err;
    return { why: `no listing of the dated builds (${(err as Error).message})` };
  }
  const names = listedDirectories(listing).filter((d) => builds.isBuild(d));
  names.sort((a, b) => (a < b ? 1 : a > b ? -1 : 0)); // newest first: the names start with the date
  for (const build of names.slice(0, MAX_LOOKS)) {
    const b = builds.build(build);
    const sums = await fetchText(b.sumsUrl, opts).catch((err: unknown) => {
      if (opts.signal?.aborted) throw err;
      return undefined; // a build without a list (being uploaded): look at the next
    });
    if (sums !== undefined && safeFindSum(sums, b.fileName, b.algo) === digest.hex && b.algo === digest.algo) return { url: b.canonicalUrl, build };
  }
  return { why: names.length === 0 ? 'the listing names no dated builds' : `none of the ${Math.min(names.length, MAX_LOOKS)} newest dated builds has this digest` };
}

/** The directory names an HTML index links to (`<a href="20250115-1993/">`), as Apache, nginx
 * and python's http.server write them. */
export function listedDirectories(html: string): string[] {
  const found = new Set<string>();
  for (const m of html.matchAll(/href\s*=\s*"([^"?#]+)\/"/gi)) {
    let name: string;
    try {
      name = decodeURIComponent(m[1]!);
    } catch {
      continue;
    }
    name = name.split('/').pop()!; // a link may be written from the root: /images/cloud/bookworm/20250115-1993/
    if (name !== '' && name !== '.' && name !== '..') found.add(name);
  }
  return [...found];
}

function safeFindSum(text: string, fileName: string, algo: Checksum['algo']): string | undefined {
  try {
    return findSum(text, fileName, algo);
  } catch {
    return undefined; // a list that contradicts itself vouches for nothing
  }
}
