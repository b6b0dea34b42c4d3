// Owns: a file's stamp: what rum keeps of a verified file to notice, without reading it, that it
// changed since. Not: what a change means (cache.ts rehashes, tasks/base-image.ts rebuilds).
import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';

/**
 * Size, mtime and inode. Not ctime: rum sets an ACL on the base image at each VM start (so that
 * QEMU's user may read it), which moves the ctime of an unchanged file every time. A rewrite
 * that keeps size and mtime (touch -r) goes unnoticed here; a full digest would catch it.
 */
export interface FileStamp {
  size: number;
  mtimeMs: number;
  ino: number;
}

export function stampOf(st: Stats): FileStamp {
  return { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
}

export function sameStamp(a: FileStamp, b: FileStamp): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;
}

export function isStamp(x: unknown): x is FileStamp {
  const s = x as Partial<FileStamp> | null;
  return typeof s === 'object' && s !== null && [s.size, s.mtimeMs, s.ino].every((v) => typeof v === 'number');
}

/** Why `path` no longer matches `recorded`, or undefined when it still does. */
export async function stampChange(path: string, recorded: FileStamp): Promise<string | undefined> {
  let st: Stats;
  try {
    st = await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? `${path} is missing` : `${path} cannot be read (${code ?? String(err)})`;
  }
  return sameStamp(stampOf(st), recorded) ? undefined : `${path} changed on disk since it was verified`;
}
