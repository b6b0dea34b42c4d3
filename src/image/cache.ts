// Owns: the shared image cache: verified images named by their digest, which URL gave which
// digest, and a lock per URL so that concurrent runs download an image once.
// Not: the build graph (tasks/base-image.ts decides when to call this), shorthands, rendering.
//
//   <cache>/sha512-<hex>.img        an image, placed only after its digest matched; never rewritten
//   <cache>/by-url/<key>.json       the last image a URL gave: digest, file, format, stat
//   <cache>/by-url/<key>.lock       held while that URL is being fetched (PID + token inside)
//   <cache>/incoming/<key>.img*     a download in progress (its .partial is resumed by the next run)
// <key> is the first 32 hex digits of the URL's sha256. Nothing outside <cache> is ever deleted.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RumError } from '../errors.js';
import { fsyncDir, writeAtomic } from '../files/atomic.js';
import { imageCacheDir } from '../paths.js';
import { checksumFromSums, download, type DownloadOptions, type DownloadProgress } from './download.js';
import { imageInfo, type ImageFormat } from './qemu-img.js';
import { formatChecksum, type Checksum, type HashAlgo } from './sums.js';

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
}

interface UrlEntry {
  url: string;
  digest: string;
  file: string; // name inside the cache dir
  format: ImageFormat;
  virtualSize: number;
  verified: boolean;
  // the file as last seen: when these still match, the digest is not recomputed
  size: number;
  mtimeMs: number;
  ino: number;
}

const LOCK_POLL_MS = 200;
/** A lock file this old with no readable owner was left by a crash between create and write. */
const UNREADABLE_LOCK_STALE_MS = 10_000;

/**
 * The local path of the image at `url`, downloading and verifying it unless the cache has it.
 * A second call for the same URL makes no request (unless `refresh`); a pinned checksum that is
 * already cached (from any URL) makes none either.
 */
export async function ensureImage(url: string, opts: EnsureImageOptions = {}): Promise<CachedImage> {
  const cache = new ImageCache(opts.cacheDir ?? imageCacheDir());
  await cache.prepare();
  const key = urlKey(url);

  const early = await cache.lookup(url, key, opts);
  if (early) return early;

  const lock = await acquireLock(cache.lockPath(key), url, opts);
  try {
    // Another run may have fetched it while we waited.
    const now = await cache.lookup(url, key, opts);
    if (now) return now;
    return await cache.fetch(url, key, opts);
  } finally {
    await lock.release();
  }
}

class ImageCache {
  readonly dir: string;
  constructor(dir: string) {
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
  private imageName(c: Checksum): string {
    return `${c.algo}-${c.hex}.img`;
  }

  /** A cached answer, without touching the network: the URL's entry, or the pinned digest's file. */
  async lookup(url: string, key: string, opts: EnsureImageOptions): Promise<CachedImage | undefined> {
    if (!opts.refresh) {
      const entry = await this.readEntry(key);
      if (entry && entry.url === url && (!opts.checksum || entry.digest === formatChecksum(opts.checksum))) {
        const hit = await this.confirm(entry, key);
        if (hit) return hit;
      }
    }
    if (opts.checksum) return this.byDigest(url, key, opts.checksum, true);
    return undefined;
  }

  /** Download (under the URL's lock), verify, place by digest, record. */
  async fetch(url: string, key: string, opts: EnsureImageOptions): Promise<CachedImage> {
    let expected = opts.checksum;
    if (!expected && opts.sums) {
      expected = await checksumFromSums(url, opts.sums, { ...opts.download, signal: opts.signal });
      const cached = await this.byDigest(url, key, expected, true); // `latest` has not moved
      if (cached) return cached;
    }
    const incoming = this.incomingPath(key);
    await this.remove(incoming); // a leftover of a crash after the download's own rename
    const got = await download(url, incoming, {
      ...opts.download,
      expected,
      onProgress: opts.onProgress,
      signal: opts.signal,
    });
    const final = join(this.dir, this.imageName(got.checksum));
    if (await exists(final)) {
      await this.remove(incoming); // the same bytes came from another URL before
    } else {
      await rename(incoming, final);
      await fsyncDir(this.dir);
    }
    const placed = await this.record(url, key, final, got.checksum, expected !== undefined);
    return { ...placed, downloaded: true };
  }

  /** The image with digest `c`, if cached; recorded as this URL's. */
  private async byDigest(url: string, key: string, c: Checksum, verified: boolean): Promise<CachedImage | undefined> {
    const path = join(this.dir, this.imageName(c));
    if (!(await exists(path))) return undefined;
    return this.record(url, key, path, c, verified);
  }

  /** Inspect a placed image and remember it as `url`'s. */
  private async record(url: string, key: string, path: string, c: Checksum, verified: boolean): Promise<CachedImage> {
    const info = await imageInfo(path);
    if (info.backingFile !== undefined) {
      await this.remove(path);
      throw new RumError(
        'IMAGE',
        `${url} is an overlay on ${info.backingFile}, not a self-contained image`,
        'a base image may not name a backing file: it could make the VM read any host file',
      );
    }
    const st = await stat(path);
    const entry: UrlEntry = {
      url,
      digest: formatChecksum(c),
      file: path.slice(this.dir.length + 1),
      format: info.format,
      virtualSize: info.virtualSize,
      verified,
      size: st.size,
      mtimeMs: st.mtimeMs,
      ino: st.ino,
    };
    await writeAtomic(this.entryPath(key), JSON.stringify(entry, null, 2) + '\n');
    return { path, digest: entry.digest, format: info.format, virtualSize: info.virtualSize, downloaded: false, verified };
  }

  /**
   * Check an entry against its file. Unchanged stat: trusted as is. Changed: the digest is
   * recomputed; a file that no longer matches is removed and the entry forgotten.
   */
  private async confirm(entry: UrlEntry, key: string): Promise<CachedImage | undefined> {
    if (!/^sha(256|512)-[0-9a-f]+\.img$/.test(entry.file)) return undefined; // not an entry we wrote
    const path = join(this.dir, entry.file);
    const st = await stat(path).catch(() => undefined);
    if (!st) return undefined;
    const result = {
      path,
      digest: entry.digest,
      format: entry.format,
      virtualSize: entry.virtualSize,
      downloaded: false,
      verified: entry.verified,
    };
    if (st.size === entry.size && st.mtimeMs === entry.mtimeMs && st.ino === entry.ino) return result;
    const [algo, hex] = entry.digest.split(':') as [HashAlgo, string];
    if ((await hashFile(path, algo)) === hex) {
      const seen = { ...entry, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
      await writeAtomic(this.entryPath(key), JSON.stringify(seen, null, 2) + '\n');
      return result;
    }
    await this.remove(path);
    await this.remove(this.entryPath(key));
    return undefined;
  }

  private async readEntry(key: string): Promise<UrlEntry | undefined> {
    try {
      const e = JSON.parse(await readFile(this.entryPath(key), 'utf8')) as UrlEntry;
      return typeof e.url === 'string' && typeof e.file === 'string' && typeof e.digest === 'string' ? e : undefined;
    } catch {
      return undefined; // missing or unreadable: a miss
    }
  }

  /** rm, refusing anything outside the cache directory. */
  private async remove(path: string): Promise<void> {
    const abs = resolve(path);
    if (!abs.startsWith(this.dir + sep)) throw new Error(`refusing to delete ${abs}: outside ${this.dir}`);
    await rm(abs, { force: true });
  }
}

export function urlKey(url: string): string {
  return createHash('sha256').update(url).digest('hex').slice(0, 32);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function hashFile(path: string, algo: HashAlgo): Promise<string> {
  const h = createHash(algo);
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) h.update(chunk);
  return h.digest('hex');
}

// --- the per-URL lock ----------------------------------------------------------------------------
// An exclusive create (O_EXCL) of a file holding {pid, host, token}. A lock whose PID is gone on
// this host is stale and taken over. Known gap: PID reuse makes a stale lock look held (the wait
// then times out with a hint naming the file).

interface LockHolder {
  pid: number;
  host: string;
  token: string;
}

async function acquireLock(path: string, url: string, opts: EnsureImageOptions): Promise<{ release: () => Promise<void> }> {
  const me: LockHolder = { pid: process.pid, host: hostname(), token: randomBytes(8).toString('hex') };
  const body = JSON.stringify(me) + '\n';
  const deadline = Date.now() + (opts.lockTimeoutMs ?? 60 * 60_000);
  let told = false;
  for (;;) {
    opts.signal?.throwIfAborted();
    try {
      const fh = await open(path, 'wx', 0o644);
      try {
        await fh.writeFile(body);
        await fh.sync();
      } finally {
        await fh.close();
      }
      return { release: () => releaseLock(path, body) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const seen = await readFile(path, 'utf8').catch(() => undefined);
    if (seen === undefined) continue; // released between our open and read
    const holder = parseHolder(seen);
    if (await isStale(path, holder)) {
      await takeOver(path, seen, me.token);
      continue;
    }
    if (Date.now() > deadline) {
      throw new RumError(
        'LOCKED',
        `another rum${holder ? ` (pid ${holder.pid})` : ''} has been fetching ${url} for too long`,
        `if no rum is running, delete ${path}`,
      );
    }
    if (!told && holder) {
      told = true;
      opts.onWait?.({ pid: holder.pid });
    }
    await sleep(LOCK_POLL_MS, undefined, { signal: opts.signal });
  }
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const h = JSON.parse(text) as Partial<LockHolder>;
    const ok = typeof h.pid === 'number' && typeof h.host === 'string' && typeof h.token === 'string';
    return ok ? (h as LockHolder) : undefined;
  } catch {
    return undefined;
  }
}

async function isStale(path: string, holder: LockHolder | undefined): Promise<boolean> {
  if (!holder) {
    // created but not yet written, or torn by a crash: stale only once it is old
    const st = await stat(path).catch(() => undefined);
    return st !== undefined && Date.now() - st.mtimeMs > UNREADABLE_LOCK_STALE_MS;
  }
  if (holder.host !== hostname()) return false; // a shared cache: we cannot see that host's processes
  try {
    process.kill(holder.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH'; // EPERM: alive, someone else's
  }
}

/**
 * Remove a stale lock without removing a fresh one that replaced it meanwhile: move it aside
 * (atomic), then look at what was moved. If it is not the stale lock we judged, link it back.
 */
async function takeOver(path: string, staleText: string, token: string): Promise<void> {
  const aside = `${path}.stale-${process.pid}-${token}`;
  try {
    await rename(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else cleared it
    throw err;
  }
  const moved = await readFile(aside, 'utf8').catch(() => undefined);
  if (moved !== staleText) await link(aside, path).catch(() => undefined); // not ours to break
  await rm(aside, { force: true });
}

async function releaseLock(path: string, body: string): Promise<void> {
  const now = await readFile(path, 'utf8').catch(() => undefined);
  if (now === body) await rm(path, { force: true });
}
