// Owns: fetching one file over http(s) into place, verified: redirects, Range resume, retries,
// hashing while writing, progress data.
// Not: where files live (cache.ts), rendering progress (src/cli/output.ts), the build graph.
//
// The bytes go to `<dest>.partial` (its origin, for resuming, in `<dest>.partial.json`) and reach
// `dest` only by a rename after the digest matched. The partial's name is fixed so that a later run
// resumes it: callers serialise downloads to one `dest` (cache.ts holds a lock per URL).
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { basename, dirname } from 'node:path';
import { RumError } from '../errors.js';
import { isNoSpace, noSpaceError } from '../files/space.js';
import { fsyncDir, writeAtomic } from '../files/atomic.js';
import { backoff, sleep } from '../files/wait.js';
import { deferredCaPem } from '../net/extra-ca.js';
import { findSum, type Checksum, type HashAlgo } from './sums.js';

export interface DownloadProgress {
  received: number; // bytes of the file on disk so far (drops to 0 only if the server forces a restart)
  total?: number; // the file's size, when the server said
  rate: number; // bytes per second, smoothed, this run only
  etaSeconds?: number;
}

export interface DownloadOptions {
  /** The digest the file must have. Wins over `sums`. */
  expected?: Checksum;
  /** A checksum list to look the file up in (by `fileName`, default the URL's last segment). */
  sums?: { url: string; algo: HashAlgo; fileName?: string };
  /** At most ~10 calls a second, plus one at the start of each request and one at the end. */
  onProgress?: (p: DownloadProgress) => void;
  /** Aborting keeps the partial file, so the next run resumes it. */
  signal?: AbortSignal;
  /** Failed requests in a row that brought no new byte before giving up. Default 5. */
  retries?: number;
  /** Give up when no byte has arrived for this long, whatever `retries` says. Default 5 minutes. */
  retryWindowMs?: number;
  /** First wait before a retry, doubled each time up to 30 s. Default 1 s. */
  backoffMs?: number;
  /** A connection silent this long counts as cut. Default 60 s. */
  idleTimeoutMs?: number;
  /** Default 10. */
  maxRedirects?: number;
}

export interface DownloadResult {
  path: string;
  checksum: Checksum; // what the file hashes to (sha256 when nothing was expected)
  bytes: number;
  verified: boolean; // false when neither `expected` nor `sums` was given
}

/** Requests per download, whatever the server does: every loop here ends. */
const MAX_ATTEMPTS = 100;
const MAX_BACKOFF_MS = 30_000;
const PROGRESS_INTERVAL_MS = 100;
const SUMS_MAX_BYTES = 4 * 2 ** 20;

/** The origin of a partial file: a partial is resumed only from the URL (and version) it came from. */
interface PartialMeta {
  url: string;
  validator?: string; // a strong ETag or Last-Modified, sent as If-Range
}

/** A failure another request may cure: a cut connection, a timeout, a 5xx. */
class Retryable extends Error {}

export async function download(url: string, dest: string, opts: DownloadOptions = {}): Promise<DownloadResult> {
  const expected = opts.expected
    ? { algo: opts.expected.algo, hex: opts.expected.hex.toLowerCase() }
    : opts.sums
      ? await checksumFromSums(url, opts.sums, opts)
      : undefined;
  const algo = expected?.algo ?? 'sha256';
  await mkdir(dirname(dest), { recursive: true });
  const partial = `${dest}.partial`;

  let got = await fetchToPartial(url, partial, algo, opts);
  if (expected && got.hex !== expected.hex && got.resumed) {
    // The kept bytes may belong to an older file at the same URL (e.g. Debian's `latest`) that
    // the server could not tell apart: start over once before calling it a mismatch.
    await removePartial(partial);
    got = await fetchToPartial(url, partial, algo, opts);
  }
  if (expected && got.hex !== expected.hex) {
    await removePartial(partial);
    throw new RumError(
      'IMAGE',
      `checksum mismatch for ${shown(url)}: expected ${algo}:${expected.hex}, got ${algo}:${got.hex}`,
      opts.expected
        ? 'the file changed upstream or was corrupted on the way; check image.checksum against the distribution'
        : `the file does not match ${opts.sums?.url}; the mirror may be mid-update: try again later`,
    );
  }
  await syncFile(partial); // the data before the rename, so a crash never leaves a short dest
  await rename(partial, dest);
  await rm(metaPath(partial), { force: true });
  await fsyncDir(dirname(dest));
  return { path: dest, checksum: { algo, hex: got.hex }, bytes: got.bytes, verified: expected !== undefined };
}

/** Fetch a checksum list and return the digest it gives for the file behind `url`. */
export async function checksumFromSums(
  url: string,
  sums: NonNullable<DownloadOptions['sums']>,
  opts: DownloadOptions,
): Promise<Checksum> {
  const fileName = sums.fileName ?? decodeURIComponent(basename(new URL(url).pathname));
  const text = await fetchText(sums.url, opts);
  const hex = findSum(text, fileName, sums.algo);
  if (!hex) {
    throw new RumError(
      'IMAGE',
      `${sums.url} lists no ${sums.algo} digest for ${fileName}`,
      'the mirror may be out of date; or pin the image with image.checksum',
    );
  }
  return { algo: sums.algo, hex };
}

/**
 * The size of the file at `url` without fetching it: asked for its first byte, which a server
 * with Range answers with the whole size in Content-Range; one without, with Content-Length (the
 * body is not read). Undefined when the server says neither.
 */
export async function remoteSize(url: string, opts: DownloadOptions = {}): Promise<number | undefined> {
  const res = await get(url, { range: 'bytes=0-0' }, opts);
  try {
    if (res.statusCode === 206) return parseContentRange(res.headers['content-range'])?.total;
    if (res.statusCode !== 200) throw statusError(res, url);
    const n = Number(res.headers['content-length']);
    return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
  } finally {
    res.destroy();
  }
}

/** A small text file (a checksum list), with the same redirect and retry rules. */
export async function fetchText(url: string, opts: DownloadOptions = {}): Promise<string> {
  const retries = opts.retries ?? 5;
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await get(url, {}, opts);
      if (res.statusCode !== 200) throw statusError(res, url);
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > SUMS_MAX_BYTES) {
          res.destroy();
          throw new RumError('IMAGE', `${shown(url)} is larger than a checksum list should be (over 4 MiB)`);
        }
        chunks.push(chunk);
      }
      const declared = contentLength(res);
      if (declared !== undefined && declared !== size) {
        throw new Retryable(`connection closed after ${size} of ${declared} bytes`);
      }
      return Buffer.concat(chunks).toString('utf8');
    } catch (err) {
      const retryable = classify(err, url, opts.signal);
      if (attempt > retries || attempt >= MAX_ATTEMPTS) throw gaveUp(url, attempt, retryable);
      await sleep(backoff(attempt, opts.backoffMs ?? 1000, MAX_BACKOFF_MS), opts.signal);
    }
  }
}

interface Fetched {
  hex: string;
  bytes: number;
  resumed: boolean; // some bytes were kept from an earlier request
}

/** Bring `partial` to the whole file, resuming what is there when the server allows. */
async function fetchToPartial(url: string, partial: string, algo: HashAlgo, opts: DownloadOptions): Promise<Fetched> {
  const retries = opts.retries ?? 5;
  const windowMs = opts.retryWindowMs ?? 5 * 60_000;
  const meter = new Meter(opts.onProgress);
  // Invariant: `hasher` has seen exactly the first `hashed` bytes of `partial`.
  let hasher = createHash(algo);
  let hashed = 0;
  let resumed = false;
  let failures = 0; // in a row, without a new byte
  let lastByteAt = Date.now();

  for (let attempt = 1; ; attempt++) {
    if (attempt > MAX_ATTEMPTS) {
      throw new RumError(
        'IMAGE',
        `downloading ${shown(url)} took more than ${MAX_ATTEMPTS} requests`,
        'the server keeps cutting or restarting the transfer; try a mirror',
      );
    }
    opts.signal?.throwIfAborted();
    const have = await sizeOf(partial);
    const meta = have > 0 ? await readMeta(partial) : undefined;
    const offset = meta?.url === url ? have : 0; // a partial of unknown origin is not resumed
    if (offset !== hashed) {
      hasher = createHash(algo);
      hashed = 0;
      if (offset > 0) {
        await hashPrefix(partial, offset, hasher, opts.signal); // the hash state did not survive the last run
        hashed = offset;
      }
    }
    const headers: Record<string, string> = {};
    if (offset > 0) {
      headers.range = `bytes=${offset}-`;
      if (meta?.validator) headers['if-range'] = meta.validator; // a changed file comes back whole (200)
    }

    let received = 0; // this request's bytes
    try {
      const res = await get(url, headers, opts);
      const status = res.statusCode ?? 0;
      let append: boolean;
      let total: number | undefined;
      if (status === 206) {
        const range = parseContentRange(res.headers['content-range']);
        if (!range || range.start !== offset) {
          res.destroy();
          if (offset === 0) {
            throw new RumError('IMAGE', `${shown(url)} answered a plain GET with a partial response (${res.headers['content-range']})`);
          }
          // Not the bytes we asked for: throw the partial away and ask for the whole file.
          await removePartial(partial);
          continue;
        }
        append = offset > 0;
        total = range.total ?? (contentLength(res) !== undefined ? offset + contentLength(res)! : undefined);
      } else if (status === 200) {
        append = false; // the server ignored Range, or the file changed (If-Range): start from zero
        total = contentLength(res);
      } else if (status === 416 && offset > 0) {
        res.resume();
        const range = parseContentRange(res.headers['content-range']);
        if (range?.total === offset) {
          resumed = true; // the partial is already the whole file
          meter.finish(offset, offset);
          return { hex: hasher.digest('hex'), bytes: offset, resumed };
        }
        await removePartial(partial); // longer than the file: not ours to trust
        continue;
      } else {
        throw statusError(res, url);
      }

      if (!append) {
        hasher = createHash(algo);
        hashed = 0;
      } else {
        resumed = true;
      }
      const fh = await openPartial(partial, append);
      try {
        if (!append) await writeMeta(partial, { url, validator: validatorOf(res) }); // after the truncation
        meter.start(hashed, total);
        for await (const chunk of res as AsyncIterable<Buffer>) {
          hasher.update(chunk);
          hashed += chunk.length;
          received += chunk.length;
          await writeChunk(fh, chunk, partial, total);
          meter.add(hashed);
        }
        if (total !== undefined && hashed < total) {
          throw new Retryable(`connection closed after ${hashed} of ${total} bytes`);
        }
        if (total !== undefined && hashed > total) {
          throw new RumError('IMAGE', `${shown(url)} sent ${hashed} bytes after announcing ${total}`);
        }
      } finally {
        await fh.close();
      }
      meter.finish(hashed, total);
      return { hex: hasher.digest('hex'), bytes: hashed, resumed };
    } catch (err) {
      const retryable = classify(err, url, opts.signal);
      if (received > 0) {
        failures = 0;
        lastByteAt = Date.now();
      }
      failures++;
      if (failures > retries || Date.now() - lastByteAt > windowMs) throw gaveUp(url, attempt, retryable);
      await sleep(backoff(failures, opts.backoffMs ?? 1000, MAX_BACKOFF_MS), opts.signal);
    }
  }
}

// TLS verification failures: no retry cures them.
const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Rethrows what no retry can cure; returns what one might. */
function classify(err: unknown, url: string, signal: AbortSignal | undefined): Retryable {
  if (signal?.aborted) throw signal.reason ?? err;
  if (err instanceof RumError) throw err;
  if (err instanceof Retryable) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code && UNTRUSTED.has(code)) {
    throw new RumError(
      'IMAGE',
      `${shown(url)}: the server's certificate is not trusted: ${(err as Error).message}`,
      'if this network puts its own CA in front (a proxy), point NODE_EXTRA_CA_CERTS at its certificate (PEM)',
      { cause: err },
    );
  }
  if (code === 'ENOTFOUND') {
    throw new RumError('IMAGE', `cannot resolve the host of ${shown(url)}`, 'check the URL (or image.mirror) and DNS', { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new Retryable(code && !message.includes(code) ? `${message} (${code})` : message, { cause: err });
}

function gaveUp(url: string, attempts: number, last: Retryable): RumError {
  return new RumError(
    'IMAGE',
    `downloading ${shown(url)} failed after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${last.message}`,
    'check the network (or image.mirror); running rum again resumes from the bytes already fetched',
    { cause: last },
  );
}

function statusError(res: IncomingMessage, url: string): Error {
  res.resume();
  const status = res.statusCode ?? 0;
  const what = `HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''} from ${shown(url)}`;
  if (status >= 500 || status === 408 || status === 429) return new Retryable(what);
  return new RumError(
    'IMAGE',
    what,
    status === 404 ? 'check image.base (and image.mirror): the server has no such file' : undefined,
  );
}

/** GET with bounded redirects. The body of a redirect is discarded. */
async function get(url: string, headers: Record<string, string>, opts: DownloadOptions): Promise<IncomingMessage> {
  const maxRedirects = opts.maxRedirects ?? 10;
  let current = parseHttpUrl(url, url);
  for (let hops = 0; ; hops++) {
    const res = await requestOnce(current, headers, opts);
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (![301, 302, 303, 307, 308].includes(status) || !location) return res;
    res.resume();
    if (hops >= maxRedirects) throw new RumError('IMAGE', `${shown(url)} redirected more than ${maxRedirects} times`);
    current = parseHttpUrl(new URL(location, current).href, url);
  }
}

function parseHttpUrl(href: string, original: string): URL {
  let u: URL;
  try {
    u = new URL(href);
  } catch {
    throw new RumError('IMAGE', `"${href}" is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new RumError('IMAGE', `${original} leads to ${u.protocol} URL; only http and https are supported`);
  }
  return u;
}

type TlsTrust = { secureContext: SecureContext } | { ca: string[] } | undefined;
let deferredTrust: TlsTrust | null = null; // null: not built yet (once per process, not per request)

/** TLS options that trust NODE_EXTRA_CA_CERTS when rum's launcher deferred it: Node's default
 * store (whichever it is: bundled, OpenSSL's, the system's) plus that file. */
function withDeferredCa(): TlsTrust {
  if (deferredTrust !== null) return deferredTrust;
  const pem = deferredCaPem();
  if (!pem) return (deferredTrust = undefined);
  const secureContext = createSecureContext();
  // addCACert is what Node itself uses for NODE_EXTRA_CA_CERTS; `ca` would replace the store.
  // It is not a documented API, hence the fallback.
  const native = (secureContext as unknown as { context?: { addCACert?: (pem: string) => void } }).context;
  if (typeof native?.addCACert !== 'function') return (deferredTrust = { ca: [...rootCertificates, pem] });
  native.addCACert(pem);
  return (deferredTrust = { secureContext });
}

function requestOnce(url: URL, headers: Record<string, string>, opts: DownloadOptions): Promise<IncomingMessage> {
  const idleMs = opts.idleTimeoutMs ?? 60_000;
  const tls = url.protocol === 'https:' ? withDeferredCa() : undefined;
  return new Promise((resolve, reject) => {
    const client = url.protocol === 'https:' ? https : http;
    const req = client.get(
      url,
      {
        ...tls,
        // identity: a compressed body would make byte offsets (and so Range) meaningless
        headers: { 'user-agent': 'rum', 'accept-encoding': 'identity', ...headers },
        agent: false, // one connection per request: no pooled socket that went stale during a backoff
        signal: opts.signal,
      },
      resolve,
    );
    req.on('error', reject);
    req.setTimeout(idleMs, () => req.destroy(new Retryable(`no data for ${Math.round(idleMs / 1000)} s`)));
  });
}

function contentLength(res: IncomingMessage): number | undefined {
  const v = res.headers['content-length'];
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

export function parseContentRange(v: string | undefined): { start?: number; end?: number; total?: number } | undefined {
  const m = v === undefined ? null : /^bytes (?:(\d+)-(\d+)|\*)\/(\d+|\*)$/.exec(v.trim());
  if (!m) return undefined;
  return {
    start: m[1] === undefined ? undefined : Number(m[1]),
    end: m[2] === undefined ? undefined : Number(m[2]),
    total: m[3] === '*' ? undefined : Number(m[3]),
  };
}

/** Something that names this version of the file, for If-Range; weak ETags may not be used there. */
function validatorOf(res: IncomingMessage): string | undefined {
  const etag = res.headers.etag;
  if (etag && !etag.startsWith('W/')) return etag;
  return res.headers['last-modified'];
}

function metaPath(partial: string): string {
  return `${partial}.json`;
}

async function readMeta(partial: string): Promise<PartialMeta | undefined> {
  try {
    const m = JSON.parse(await readFile(metaPath(partial), 'utf8')) as Partial<PartialMeta>;
    if (typeof m.url !== 'string') return undefined;
    return { url: m.url, validator: typeof m.validator === 'string' ? m.validator : undefined };
  } catch {
    return undefined; // missing or torn: the partial is not resumed
  }
}

async function writeMeta(partial: string, meta: PartialMeta): Promise<void> {
  try {
    await writeAtomic(metaPath(partial), JSON.stringify(meta) + '\n');
  } catch (err) {
    throw fileError(err, metaPath(partial));
  }
}

async function removePartial(partial: string): Promise<void> {
  await rm(partial, { force: true });
  await rm(metaPath(partial), { force: true });
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

async function syncFile(path: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function openPartial(partial: string, append: boolean): Promise<FileHandle> {
  try {
    return await open(partial, append ? 'a' : 'w', 0o644);
  } catch (err) {
    throw fileError(err, partial);
  }
}

async function writeChunk(fh: FileHandle, chunk: Buffer, partial: string, total: number | undefined): Promise<void> {
  try {
    await fh.write(chunk);
  } catch (err) {
    throw fileError(err, partial, total);
  }
}

/** `total`: the whole file's size, when known: what a full disk needed room for. */
function fileError(err: unknown, path: string, total?: number): RumError {
  if (isNoSpace(err)) return noSpaceError(path, total, err);
  const code = (err as NodeJS.ErrnoException).code;
  return new RumError('IMAGE', `cannot write ${path}: ${code ?? String(err)}`, undefined, { cause: err });
}

async function hashPrefix(path: string, length: number, hasher: Hash, signal: AbortSignal | undefined): Promise<void> {
  for await (const chunk of createReadStream(path, { start: 0, end: length - 1, signal }) as AsyncIterable<Buffer>) {
    hasher.update(chunk);
  }
}

/** Turns byte counts into throttled progress data. */
class Meter {
  private lastAt = 0;
  private lastBytes = 0;
  private rate = 0;
  private total: number | undefined;

  constructor(private readonly onProgress: DownloadOptions['onProgress']) {}

  start(received: number, total: number | undefined): void {
    this.total = total;
    this.lastAt = performance.now();
    this.lastBytes = received;
    this.emit(received);
  }

  add(received: number): void {
    const now = performance.now();
    if (now - this.lastAt < PROGRESS_INTERVAL_MS) return;
    const instant = ((received - this.lastBytes) * 1000) / (now - this.lastAt);
    this.rate = this.rate === 0 ? instant : 0.7 * this.rate + 0.3 * instant;
    this.lastAt = now;
    this.lastBytes = received;
    this.emit(received);
  }

  finish(received: number, total: number | undefined): void {
    this.total = total ?? received;
    this.emit(received);
  }

  private emit(received: number): void {
    if (!this.onProgress) return;
    const total = this.total;
    const etaSeconds = total !== undefined && this.rate > 0 ? Math.max(0, (total - received) / this.rate) : undefined;
    this.onProgress({ received, total, rate: this.rate, etaSeconds });
  }
}

/** A URL as messages show it: a password in it is never printed. */
export function shown(url: string): string {
  try {
    const u = new URL(url);
    if (u.password === '') return url;
    u.password = '***';
    return u.href;
  } catch {
    return url;
  }
}
