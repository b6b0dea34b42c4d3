// Owns: writing a file so that a reader (or a crash) sees the old file or the new one, never half.
import { open, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { asNoSpace } from './space.js';

let seq = 0;

/** A temp path beside `path`, unique per process and call, so parallel writers never collide. */
export function tempPath(path: string): string {
  return `${path}.tmp-${process.pid}-${++seq}`;
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function writeAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await produceAtomic(path, (tmp) => writeFile(tmp, data, { mode, flag: 'wx' }), { needed: Buffer.byteLength(data) });
}

export interface ProduceOptions {
  /** Throws unless the temp file is complete and sound (e.g. `qemu-img check`): a tool that
   * met a full disk may still exit 0. Runs after the data is on disk, before the rename. */
  verify?: (tmp: string) => Promise<void>;
  /** Bytes the file needs, for the out-of-space message. */
  needed?: number;
}

/**
 * Produce a file through `make(tmp)` (e.g. an external tool writing to a path), then rename it
 * into place. The temp file is removed if `make` or `verify` fails or is interrupted; running
 * out of space is said as such (src/files/space.ts).
 */
export async function produceAtomic(path: string, make: (tmp: string) => Promise<void>, opts: ProduceOptions = {}): Promise<void> {
  const tmp = tempPath(path);
  try {
    await make(tmp);
    const fh = await open(tmp, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await opts.verify?.(tmp);
    await rename(tmp, path);
    await fsyncDir(dirname(path));
  } catch (err) {
    await rm(tmp, { force: true });
    throw asNoSpace(err, path, opts.needed);
  }
}
