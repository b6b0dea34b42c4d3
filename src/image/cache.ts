// Owns: the shared image cache: verified images named by their digest, which URL gave which
// digest, and a lock per URL so that concurrent runs download an image once.
// Not: the build graph (tasks/base-image.ts decides when to call this), shorthands, rendering.
//
//   <cache>/sha512-<hex>.img        an image, renamed in only once whole, its digest matched and
//                                   inspect.ts accepted it; never rewritten (a damaged one is removed)
//   <cache>/by-url/<key>.json       the last image a URL gave: digest, file, format, stamp
//   <cache>/by-url/<key>.lock       held while that URL is being fetched (files/lock.ts)
//   <cache>/incoming/<key>.img*     a download in progress (its .partial is resumed by the next run)
// <key> is the first 32 hex digits of the URL's sha256. Nothing outside <cache> is ever deleted.
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { fsyncDir, writeAtomic } from '../files/atomic.js';
import { acquireLock } from '../files/lock.js';
import { imageCacheDir } from '../paths.js';
import { checksumFromSums, download, type DownloadOptions, type DownloadProgress } from './download.js';
import { inspectBaseImage } from './inspect.js';
import type { ImageFormat, ImageInfo } from './qemu-img.js';
import { isStamp, sameStamp, stampOf, type FileStamp } from './stamp.js';
import { fileChecksum, formatChecksum, type Checksum, type HashAlgo } from './sums.js';

export interface EnsureImageOptions {
  /** The digest the image must have (image.checksum). Wins over `sums`. */
  checksum?: Checksum;
  /** Where to look the digest up when none is pinned (a shorthand's SUMS file). */
  sums?: { url: string; algo: HashAlgo; fileName?: string };
  /**
   * Ask the server again even if this URL is cached: looks the SUMS digest up afresh (a moved
   * `latest`) and downloads only if that digest is not cached yet.
   */
  refresh?: boolean;
  /** Default: imageCacheDir() ($XDG_CACHE_HOME/rum/images). */
  cacheDir?: string;
  onProgress?: (p: DownloadProgress) => void;
  /** Called once when another run holds this URL's lock and we wait for it. */
  onWait?: (holder: { pid: number }) => void;
  signal?: AbortSignal;
  /** How long to wait for another run's download of the same URL. Default 1 hour. */
  lockTimeoutMs?: number;
  /** Retry and timeout knobs, passed to download(). */
  download?: Pick<DownloadOptions, 'retries' | 'retryWindowMs' | 'backoffMs' | 'idleTimeoutMs' | 'maxRedirects'>;
}

export interface CachedImage {
  path: string;
  digest: string; // `sha256:<hex>` or `sha512:<hex>`, as in image.checksum
  format: ImageFormat;
  virtualSize: number;
  downloaded: boolean; // false: served from the cache
  verified: boolean; // false: no checksum was pinned or listed, the digest is only what arrived
  /** The file as it was verified: compare a later stat with it (stamp.ts) to notice a change. */
  stamp: FileStamp;
}

/** The file's stamp as last verified: while the file still has it, its digest is not recomputed. */
interface UrlEntry extends FileStamp {
  url: string;
  digest: string;
  file: string; // name inside the cache dir, always the one `digest` gives
  format: ImageFormat;
  virtualSize: number;
  verified: boolean;
  inspected?: number; // INSPECTION, once inspectBaseImage accepted the file
}

/** Bump when inspect.ts refuses more than it did: entries recorded before are inspected again. */
const INSPECTION = 1;

/**
 * The local path of the image at `url`, downloading and verifying it unless the cache has it.
 * A second call for the same URL makes no request (unless `refresh`); a pinned checksum that is
 * already cached (from any URL) makes none either.
 */
export async function ensureImage(url: string, opts: EnsureImageOptions = {}): Promise<CachedImage> {
  const cache = new ImageCache(opts.cacheDir ?? imageCacheDir(), opts.signal);
  await cache.prepare();
  const key = urlKey(url);

  const early = await cache.lookup(url, key, opts);
  if (early) return early;

  const lock = await acquireLock(cache.lockPath(key), {
    what: `the download of ${url}`,
    timeoutMs: opts.lockTimeoutMs ?? 60 * 60_000,
    onWait: opts.onWait,
    signal: opts.signal,
  });
  try {
    // Another run may have fetched it while we waited.
    const now = await cache.lookup(url, key, opts);
    if (now) return now;
    return await cache.fetch(url, key, opts);
  } finally {
    await lock.release();
  }
}

/**
 * What the cache holds for `url` (its last verified image) or for the digest `checksum`, without
 * touching the network; undefined when it holds neither.
 */
export async function cachedImage(url: string, opts: Pick<EnsureImageOptions, 'checksum' | 'cacheDir' | 'signal'> = {}): Promise<CachedImage | undefined> {
  const cache = new ImageCache(opts.cacheDir ?? imageCacheDir(), opts.signal);
  await cache.prepare();
  return cache.lookup(url, urlKey(url), { ...(opts.checksum ? { checksum: opts.checksum } : {}) });
}

class ImageCache {
  readonly dir: string;
  constructor(
    dir: string,
    private readonly signal?: AbortSignal,
  ) {
    this.dir = resolve(dir);
  }

  async prepare(): Promise<void> {
    await mkdir(join(this.dir, 'by-url'), { recursive: true });
    await mkdir(join(this.dir, 'incoming'), { recursive: true });
  }

  lockPath(key: string): string {
    return join(this.dir, 'by-url', `${key}.lock`);
  }
  private entryPath(key: string): string {
    return join(this.dir, 'by-url', `${key}.json`);
  }
  private incomingPath(key: string): string {
    return join(this.dir, 'incoming', `${key}.img`);
  }

  /** A cached answer, without touching the network: the URL's entry, or the pinned digest's file. */
  async lookup(url: string, key: string, opts: EnsureImageOptions): Promise<CachedImage | undefined> {
    if (!opts.refresh) {
      const entry = await this.readEntry(this.entryPath(key));
      if (entry && entry.url === url && (!opts.checksum || entry.digest === formatChecksum(opts.checksum))) {
        const hit = await this.confirm(entry, key);
        if (hit) return hit;
      }
    }
    if (opts.checksum) return this.byDigest(url, key, opts.checksum, true);
    return undefined;
  }

  /** Download (under the URL's lock), verify, inspect, place by digest, record. */
  async fetch(url: string, key: string, opts: EnsureImageOptions): Promise<CachedImage> {
    let expected = opts.checksum;
    if (!expected && opts.sums) {
      expected = await checksumFromSums(url, opts.sums, { ...opts.download, signal: opts.signal });
      const cached = await this.byDigest(url, key, expected, true); // `latest` has not moved
      if (cached) return cached;
    }
    const incoming = this.incomingPath(key);
    await this.remove(incoming); // a leftover of a crash after the download's own rename
    // download() renames into `incoming` only a whole file whose digest matched, after an fsync.
    const got = await download(url, incoming, {
      ...opts.download,
      expected,
      onProgress: opts.onProgress,
      signal: opts.signal,
    });
    // Inspected before the rename into the cache, so that a file there is always an image rum
    // accepts: another run may pick it up by its name the moment it appears.
    let info: ImageInfo;
    try {
      info = await inspectBaseImage(incoming, url, 'download');
    } catch (err) {
      await this.remove(incoming);
      throw err;
    }
    const final = join(this.dir, imageName(got.checksum));
    let stamp = await this.intact(final, got.checksum);
    if (stamp) {
      await this.remove(incoming); // the same bytes came from another URL before
    } else {
      await rename(incoming, final); // incoming/ is inside the cache: the same filesystem
      await fsyncDir(this.dir);
      stamp = stampOf(await stat(final));
    }
    const placed = await this.record(url, key, final, got.checksum, expected !== undefined, stamp, info);
    return { ...placed, downloaded: true };
  }

  /** The image with digest `c`, if cached and intact; recorded as this URL's. */
  private async byDigest(url: string, key: string, c: Checksum, verified: boolean): Promise<CachedImage | undefined> {
    const path = join(this.dir, imageName(c));
    const stamp = await this.intact(path, c);
    if (!stamp) return undefined;
    return this.record(url, key, path, c, verified, stamp);
  }

  /** Remember the image at `path` (verified, with `stamp`) as `url`'s; inspected unless `info` is given. */
  private async record(
    url: string,
    key: string,
    path: string,
    c: Checksum,
    verified: boolean,
    stamp: FileStamp,
    info?: ImageInfo,
  ): Promise<CachedImage> {
    const accepted = info ?? (await inspectBaseImage(path, url, 'download'));
    const entry: UrlEntry = {
      url,
      digest: formatChecksum(c),
      file: imageName(c),
      format: accepted.format,
      virtualSize: accepted.virtualSize,
      verified,
      inspected: INSPECTION,
      ...stamp,
    };
    await this.writeEntry(key, entry);
    return this.answer(entry);
  }

  /**
   * Check an entry against its file. Unchanged stamp: trusted as is. Changed: the digest is
   * recomputed; a file that no longer matches is removed and the entry forgotten, so that the
   * caller fetches it again. An entry older than the current inspection is inspected again.
   */
  private async confirm(entry: UrlEntry & Checksum, key: string): Promise<CachedImage | undefined> {
    const path = join(this.dir, entry.file);
    const st = await stat(path).catch(() => undefined);
    if (!st) return undefined;
    let seen = entry;
    const now = stampOf(st);
    if (!sameStamp(now, entry)) {
      if ((await this.hash(path, entry.algo)) !== entry.hex) {
        await this.removeIfStill(path, now);
        await this.remove(this.entryPath(key));
        return undefined;
      }
      seen = { ...seen, ...now };
    }
    if (seen.inspected !== INSPECTION) {
      const info = await inspectBaseImage(path, entry.url, 'download');
      seen = { ...seen, format: info.format, virtualSize: info.virtualSize, inspected: INSPECTION };
    }
    if (seen !== entry) await this.writeEntry(key, seen);
    return this.answer(seen);
  }

  /**
   * The stamp of the file at `path` when its content has digest `c`: vouched for by an entry
   * that recorded this very stamp, or else hashed. A file that hashes otherwise is removed: it
   * must not be found by its name again.
   */
  private async intact(path: string, c: Checksum): Promise<FileStamp | undefined> {
    const st = await stat(path).catch(() => undefined);
    if (!st) return undefined;
    const now = stampOf(st); // taken before the hash: a change during it shows at the next look
    if (await this.vouched(imageName(c), now)) return now;
    if ((await this.hash(path, c.algo)) === c.hex) return now;
    await this.removeIfStill(path, now);
    return undefined;
  }

  /** The file's digest (hex); undefined when it vanished meanwhile (another run removed it). */
  private async hash(path: string, algo: HashAlgo): Promise<string | undefined> {
    try {
      return (await fileChecksum(path, algo, this.signal)).hex;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Some URL's entry recorded `file` with this stamp: it is unchanged since it was verified. */
  private async vouched(file: string, now: FileStamp): Promise<boolean> {
    const names = await readdir(join(this.dir, 'by-url')).catch(() => [] as string[]);
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const e = await this.readEntry(join(this.dir, 'by-url', name));
      if (e?.file === file && sameStamp(e, now)) return true;
    }
    return false;
  }

  private answer(e: UrlEntry): CachedImage {
    const stamp = { size: e.size, mtimeMs: e.mtimeMs, ino: e.ino };
    return { path: join(this.dir, e.file), digest: e.digest, format: e.format, virtualSize: e.virtualSize, downloaded: false, verified: e.verified, stamp };
  }

  /** An entry we wrote: its file is the one its digest names, so a changed entry cannot point elsewhere. */
  private async readEntry(path: string): Promise<(UrlEntry & Checksum) | undefined> {
    try {
      const e = JSON.parse(await readFile(path, 'utf8')) as UrlEntry;
      const c = parseDigest(e.digest);
      const ok =
        typeof e.url === 'string' &&
        c !== undefined &&
        e.file === imageName(c) &&
        typeof e.format === 'string' &&
        typeof e.virtualSize === 'number' &&
        typeof e.verified === 'boolean' &&
        isStamp(e);
      return ok ? { ...e, ...c } : undefined;
    } catch {
      return undefined; // missing or unreadable: a miss
    }
  }

  private async writeEntry(key: string, e: UrlEntry): Promise<void> {
    const { url, digest, file, format, virtualSize, verified, inspected, size, mtimeMs, ino } = e;
    const clean: UrlEntry = { url, digest, file, format, virtualSize, verified, inspected, size, mtimeMs, ino };
    await writeAtomic(this.entryPath(key), JSON.stringify(clean, null, 2) + '\n');
  }

  /**
   * Remove a file found damaged, unless it changed since it was hashed: another run may have
   * just renamed a fresh, verified copy into its place.
   */
  private async removeIfStill(path: string, hashed: FileStamp): Promise<void> {
    const st = await stat(path).catch(() => undefined);
    if (st && sameStamp(stampOf(st), hashed)) await this.remove(path);
  }

  /** rm, refusing anything outside the cache directory. */
  private async remove(path: string): Promise<void> {
    const abs = resolve(path);
    if (!abs.startsWith(this.dir + sep)) throw new Error(`refusing to delete ${abs}: outside ${this.dir}`);
    await rm(abs, { force: true });
  }
}

function imageName(c: Checksum): string {
  return `${c.algo}-${c.hex}.img`;
}

/** `sha256:<hex>` or `sha512:<hex>` as an entry holds it; undefined for anything else. */
function parseDigest(text: unknown): Checksum | undefined {
  const m = typeof text === 'string' ? /^(sha256|sha512):([0-9a-f]+)$/.exec(text) : null;
  if (!m) return undefined;
  const algo = m[1] as HashAlgo;
  return m[2]!.length === (algo === 'sha256' ? 64 : 128) ? { algo, hex: m[2]! } : undefined;
}

export function urlKey(url: string): string {
  return createHash('sha256').update(url).digest('hex').slice(0, 32);
}
