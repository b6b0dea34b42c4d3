// Owns: removing the temp files a killed rum left behind in rum's own directories. Only names
// tempPath() (atomic.ts) makes, `<file>.tmp-<pid>-<n>`, and only once their writer is surely
// gone: written before the sweeper's lock was taken, by a process that is no longer running.
import { lstat, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** tempPath()'s names. test/unit/sweep.test.ts holds this to tempPath itself. */
const TEMP_NAME = /^.+\.tmp-(\d+)-\d+$/;

/** The PID a temp name carries, or undefined for a name that is not rum's temp name. */
export function tempWriter(name: string): number | undefined {
  const m = TEMP_NAME.exec(name);
  return m ? Number(m[1]) : undefined;
}

export interface SweepOptions {
  /** Only files last written before this (ms since the epoch): when the caller's lock was taken. */
  before: number;
  /** How many levels of subdirectories to look into (the image cache keeps its temps in two). */
  depth?: number;
  /** When the process with this PID started (ms since the epoch); undefined: no such process.
   * Tests replace it. */
  startedAt?: (pid: number) => Promise<number | undefined>;
}

/**
 * Removes stale temp files under `dir`; returns their paths. Never throws: a sweep that cannot
 * look or remove leaves the file for the next one.
 */
export async function sweepTemps(dir: string, opts: SweepOptions): Promise<string[]> {
  const startedAt = opts.startedAt ?? processStart;
  const removed: string[] = [];
  const visit = async (d: string, depth: number): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const path = join(d, e.name);
      if (e.isDirectory()) {
        if (depth > 0) await visit(path, depth - 1);
        continue;
      }
      const pid = tempWriter(e.name);
      if (pid === undefined || !e.isFile()) continue; // symlinks and sockets are never rum's temps
      const st = await lstat(path).catch(() => undefined);
      if (!st?.isFile() || st.mtimeMs >= opts.before) continue;
      // A live writer is one that was already running when the file was last written: the same
      // PID in a process started later is a reuse, and the file's writer is gone.
      const started = await startedAt(pid);
      if (started !== undefined && started <= st.mtimeMs) continue;
      if (await rm(path).then(() => true, () => false)) removed.push(path);
    }
  };
  await visit(dir, opts.depth ?? 0);
  return removed;
}

let bootMs: number | undefined;

/**
 * A process's start time from /proc (its field 22 counts clock ticks since boot, USER_HZ = 100 on
 * every Linux rum runs on); a second of slack covers btime's whole seconds. A process that exists
 * but cannot be read (hidepid) counts as started at the epoch: alive, its files kept.
 */
async function processStart(pid: number): Promise<number | undefined> {
  if (pid === process.pid) return Date.now() - process.uptime() * 1000 - 1000;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return undefined;
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    bootMs ??= Number(/^btime (\d+)$/m.exec(await readFile('/proc/stat', 'utf8'))?.[1]) * 1000;
    if (!Number.isFinite(ticks) || !Number.isFinite(bootMs)) return 0;
    return bootMs + ticks * 10 - 1000;
  } catch {
    return 0;
  }
}
