// Owns: resolving an image.base to what rum.lock pins (the concrete URL, digest and size; a
// local path's digest and size), and whether a pin still answers what rum.yaml asks for.
// Loaded with the rules (base-image asks pinAnswers): what fetches loads only when used.
// Not: the lock file's format (src/config/lock-file.ts) or when it is written (the commands).
import { stat } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { baseKind } from '../config/image-source.js';
import type { PinnedImage } from '../config/lock-file.js';
import type { EnsureImageOptions } from './cache.js';
import type { DownloadProgress } from './download.js';
import { fileChecksum, formatChecksum, parseChecksum, type Checksum } from './sums.js';

/** What rum.yaml says about one image: the pin must answer this. */
export interface ImageAsk {
  base: string; // image.base as written
  checksum?: string; // image.checksum
  dir: string; // rum.yaml's directory (a relative path is relative to it)
}

export interface Resolved {
  pin: PinnedImage;
  /** Said to the user: why the pin is less than it could be (e.g. no dated build found). */
  note?: string;
}

export interface ResolveOptions {
  mirror?: string;
  /** Ask the server again (rum update); else a cached image of the same URL is what it resolves to. */
  refresh?: boolean;
  now?: Date;
  signal?: AbortSignal;
  onProgress?: (p: DownloadProgress) => void;
  onWait?: () => void;
  cacheDir?: string;
  download?: EnsureImageOptions['download'];
}

/** The file a local image.base names. */
export function localFile(ask: ImageAsk): string {
  return isAbsolute(ask.base) ? ask.base : resolve(ask.dir, ask.base);
}

/**
 * Whether `pin` still answers `ask`: of the right kind, and with the digest image.checksum
 * names, if it names one. (A local file's content is compared when it is used: base-image.)
 */
export function pinAnswers(pin: PinnedImage, ask: ImageAsk): boolean {
  const kind = baseKind(ask.base);
  if ((kind === 'path') !== (pin.url === undefined)) return false;
  if (kind === 'url' && pin.url !== ask.base) return false;
  if (ask.checksum === undefined) return true;
  try {
    return formatChecksum(parseChecksum(ask.checksum)) === pin.digest;
  } catch {
    return false;
  }
}

/** The time as rum.lock records it: UTC, to the second. */
export function lockTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Resolve an image: a shorthand to its dated build (found by digest), a URL to its digest, a
 * local file to its digest. No image is downloaded for it (the build does that, verified against
 * the pin) unless nothing else tells its digest: a URL with no image.checksum. Undefined: a local
 * file that is not there (base-image says what is wrong with it).
 */
export async function resolvePin(ask: ImageAsk, opts: ResolveOptions = {}): Promise<Resolved | undefined> {
  const resolved = lockTime(opts.now ?? new Date());
  const kind = baseKind(ask.base);
  const checksum = ask.checksum === undefined ? undefined : parseChecksum(ask.checksum);
  if (kind === 'path') {
    const path = localFile(ask);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) return undefined;
    const c = await fileChecksum(path, checksum?.algo ?? 'sha256', opts.signal);
    return { pin: { digest: formatChecksum(c), size: st.size, resolved } };
  }
  const { cachedImage, ensureImage } = await import('./cache.js'); // http, tls: only when an image is resolved
  const { checksumFromSums, remoteSize } = await import('./download.js');
  const net = { retries: 2, ...(opts.signal ? { signal: opts.signal } : {}), ...opts.download };
  const cache = { ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}), ...(opts.signal ? { signal: opts.signal } : {}) };
  const common: EnsureImageOptions = {
    refresh: opts.refresh === true,
    ...cache,
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    ...(opts.onWait ? { onWait: opts.onWait } : {}),
    ...(opts.download ? { download: opts.download } : {}),
  };
  /** Digest and size without downloading the image: from the cache, else the size from the server. */
  const known = async (url: string, c: Checksum): Promise<{ digest: string; size: number }> => {
    const hit = await cachedImage(url, { ...cache, checksum: c });
    const size = hit?.stamp.size ?? (await remoteSize(url, net));
    if (size === undefined) {
      // No size from the server: fetch it (the run would have to anyway).
      const img = await ensureImage(url, { ...common, checksum: c });
      return { digest: img.digest, size: img.stamp.size };
    }
    return { digest: formatChecksum(c), size };
  };
  if (kind === 'url') {
    // Without refresh, what this cache last had from the URL (what a VM here was made from).
    const hit = opts.refresh ? undefined : await cachedImage(ask.base, { ...cache, ...(checksum ? { checksum } : {}) });
    if (hit) return { pin: { url: ask.base, digest: hit.digest, size: hit.stamp.size, resolved } };
    if (checksum) return { pin: { url: ask.base, ...(await known(ask.base, checksum)), resolved } };
    // Nothing says what the URL holds but its bytes: fetched now, into the cache the build reads.
    const img = await ensureImage(ask.base, common);
    return { pin: { url: ask.base, digest: img.digest, size: img.stamp.size, resolved } };
  }
  const { resolveShorthand } = await import('./shorthands.js');
  const { findDatedBuild } = await import('./dated.js');
  const s = resolveShorthand(ask.base, opts.mirror);
  const sums = { url: s.sumsUrl, algo: s.algo, fileName: s.fileName };
  // Without refresh, the image this cache holds for the shorthand: a VM made before rum.lock was
  // made from it, and keeps it. Else the digest the checksum list gives now (a moved `latest`).
  const hit = opts.refresh || checksum ? undefined : await cachedImage(s.url, cache);
  const at = hit
    ? { digest: hit.digest, size: hit.stamp.size }
    : await known(s.url, checksum ?? (await checksumFromSums(s.url, sums, net)));
  const digest = parseChecksum(at.digest) satisfies Checksum;
  // One try each: an unreachable listing must not hold up an `up` whose image is cached.
  const dated = await findDatedBuild(ask.base, digest, opts.mirror, { retries: 0, ...(opts.signal ? { signal: opts.signal } : {}) });
  const pin = { ...at, resolved };
  if (dated.url !== undefined) return { pin: { url: dated.url, ...pin } };
  return {
    pin: { url: resolveShorthand(ask.base).url, ...pin },
    note: `${ask.base}: rum.lock names the moving ${resolveShorthand(ask.base).url} with the digest it has now (${dated.why}); it still pins the bytes`,
  };
}
