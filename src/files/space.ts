// Owns: saying "out of space" well: which filesystem, how much is free, how much was needed.
// Any write rum makes can meet a full disk; none of them is a bug.
import { readFileSync, realpathSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { RumError } from '../errors.js';
import { shellQuote } from '../ssh/openssh.js';

/** ENOSPC or EDQUOT, from Node or in a tool's words (qemu-img, xorriso). */
export function isNoSpace(err: unknown): boolean {
  const e = err as NodeJS.ErrnoException | undefined;
  if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') return true;
  const text = `${e?.message ?? ''} ${(e as { stderr?: unknown } | undefined)?.stderr ?? ''}`;
  if (/No space left on device|Disk quota exceeded/.test(text)) return true;
  return e?.cause !== undefined && e.cause !== err && isNoSpace(e.cause);
}

/** The mount point holding `path` (the longest mount-point prefix of its real directory). */
export function mountOf(path: string): string {
  let dir = dirname(path);
  for (let i = 0; i < 64; i++) {
    try {
      dir = realpathSync(dir);
      break;
    } catch {
      if (dir === dirname(dir)) break;
      dir = dirname(dir);
    }
  }
  let best = '/';
  try {
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      // Field 5 is the mount point, with space, tab, newline and backslash written in octal.
      const mp = line.split(' ')[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
      if (mp && (dir === mp || dir.startsWith(mp.endsWith('/') ? mp : `${mp}/`)) && mp.length > best.length) best = mp;
    }
  } catch {
    // no /proc: the root is as good a name as any
  }
  return best;
}

function bytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${n.toFixed(1)} ${units[i]}`;
}

/**
 * The error to show for a write to `path` that ran out of space. `needed`: bytes the write needed
 * in all (known for a file rum writes itself, or a download's length).
 */
export function noSpaceError(path: string, needed: number | undefined, cause: unknown): RumError {
  const mount = mountOf(path);
  let free: number | undefined;
  try {
    const s = statfsSync(dirname(path));
    free = s.bavail * s.bsize;
  } catch {
    // the figure is a help, not a need
  }
  const amounts = [free !== undefined ? `${bytes(free)} free` : '', needed !== undefined ? `${bytes(needed)} needed` : ''].filter(Boolean).join(', ');
  return new RumError(
    'NO_SPACE',
    `out of space on ${mount} writing ${path}${amounts ? ` (${amounts})` : ''}`,
    `make room on that filesystem (df -h ${shellQuote(mount)}), then run the command again: nothing was left half-written`,
    { cause },
  );
}

/** `err` as the out-of-space error when it is one, else unchanged. */
export function asNoSpace(err: unknown, path: string | undefined, needed?: number): unknown {
  if (!isNoSpace(err) || err instanceof RumError && err.code === 'NO_SPACE') return err;
  return noSpaceError(path ?? (err as NodeJS.ErrnoException).path ?? process.cwd(), needed, err);
}
