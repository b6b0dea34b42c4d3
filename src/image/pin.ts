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

/**
 * Resolve an image: a shorthand to its dated build (found by digest), a URL to its digest, a
 * local file to its digest. A URL's image is fetched into the cache on the way (its size and
 * digest are only known so), so the build that follows finds it there. Undefined: a local file
 * that is not there (base-image says what is wrong with it).
 */
/** The time as rum.lock records it: UTC, to the second. */
export function lockTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

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
  const { ensureImage } = await import('./cache.js'); // http, tls: only when an image is resolved
  const common: EnsureImageOptions = {
    ...(checksum ? { checksum } : {}),
    refresh: opts.refresh === true,
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    ...(opts.onWait ? { onWait: opts.onWait } : {}),
    ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
    ...(opts.download ? { download: opts.download } : {}),
  };
  if (kind === 'url') {
    const img = await ensureImage(ask.base, common);
    return { pin: { url: ask.base, digest: img.digest, size: img.stamp.size, resolved } };
  }
  const { resolveShorthand } = await import('./shorthands.js');
  const { findDatedBuild } = await import('./dated.js');
  const s = resolveShorthand(ask.base, opts.mirror);
  const img = await ensureImage(s.url, { ...common, sums: { url: s.sumsUrl, algo: s.algo, fileName: s.fileName } });
  const digest = parseChecksum(img.digest) satisfies Checksum;
  // One try each: an unreachable listing must not hold up an `up` whose image is cached.
  const dated = await findDatedBuild(ask.base, digest, opts.mirror, { retries: 0, ...(opts.signal ? { signal: opts.signal } : {}) });
  const pin = { digest: img.digest, size: img.stamp.size, resolved };
  if (dated.url !== undefined) return { pin: { url: dated.url, ...pin } };
  return {
    pin: { url: resolveShorthand(ask.base).url, ...pin },
    note: `${ask.base}: rum.lock names the moving ${resolveShorthand(ask.base).url} with the digest it has now (${dated.why}); it still pins the bytes`,
  };
}
