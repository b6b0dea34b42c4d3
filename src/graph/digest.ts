// Owns: turning values and files into digests (xxhash64, hex), and remembering file digests by
// stat so an unchanged multi-GB image is read 0 times on later runs.
import { open, readFile, stat } from 'node:fs/promises';
import xxhash, { type XXHashAPI } from 'xxhash-wasm';
import { writeAtomic } from '../files/atomic.js';

export type Digest = string & { readonly __brand: 'Digest' };

let api: XXHashAPI | undefined;

/** Instantiating the wasm module costs ~1 ms: do it once, before any digest is taken. */
export async function initDigests(): Promise<void> {
  if (!api) api = await xxhash();
}

function hasher(): XXHashAPI {
  if (!api) throw new Error('initDigests() was not awaited');
  return api;
}

const hex64 = (n: bigint): Digest => n.toString(16).padStart(16, '0') as Digest;

export function digestOf(data: string | Uint8Array): Digest {
  const h = hasher();
  return hex64(typeof data === 'string' ? h.h64(data) : h.h64Raw(data));
}

/** JSON with object keys in code-unit order, so equal values always encode the same. */
export function canonicalJson(value: unknown): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

const CHUNK = 4 * 2 ** 20; // large reads: the syscall count, not the hash, bounds the speed

/** Streaming digest of a whole file. `onRead` sees the bytes read (for progress and tests). */
export async function digestFileContent(path: string, onRead?: (bytes: number) => void): Promise<Digest> {
  const state = hasher().create64();
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
      if (bytesRead === 0) break;
      state.update(bytesRead === CHUNK ? buf : buf.subarray(0, bytesRead));
      onRead?.(bytesRead);
    }
  } finally {
    await fh.close();
  }
  return hex64(state.digest());
}

interface StatEntry {
  stamp: string; // dev:ino:size:mtimeNs:ctimeNs
  digest: Digest;
}

/**
 * File digests remembered by (dev, ino, size, mtime, ctime). ctime catches a rewrite that kept
 * the mtime (touch -r, cp -p); the inode catches a replaced file of the same size.
 */
export class DigestCache {
  private entries: Record<string, StatEntry> = {};
  private dirty = false;
  private constructor(private readonly file: string | undefined) {}

  static async open(file: string | undefined): Promise<DigestCache> {
    const cache = new DigestCache(file);
    if (file) {
      try {
        // Missing, unreadable or of another shape: a cache, so whatever is not sound is dropped.
        const read: unknown = JSON.parse(await readFile(file, 'utf8'));
        for (const [path, e] of Object.entries(typeof read === 'object' && read !== null && !Array.isArray(read) ? read : {}))
          if (typeof e?.stamp === 'string' && typeof e?.digest === 'string') cache.entries[path] = { stamp: e.stamp, digest: e.digest as Digest };
      } catch {
        cache.entries = {};
      }
    }
    return cache;
  }

  async digest(path: string, onRead?: (bytes: number) => void): Promise<Digest> {
    const st = await stat(path, { bigint: true });
    const stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    const hit = this.entries[path];
    if (hit && hit.stamp === stamp) return hit.digest;
    const digest = await digestFileContent(path, onRead);
    this.entries[path] = { stamp, digest };
    this.dirty = true;
    return digest;
  }

  async save(): Promise<void> {
    if (!this.file || !this.dirty) return;
    await writeAtomic(this.file, JSON.stringify(this.entries));
    this.dirty = false;
  }
}
