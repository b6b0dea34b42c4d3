// Owns: one run at a time per VM. A lock file holds the owner's PID and start time; it is
// created with link() (atomic, fails if present) and a dead owner's lock is taken over.
import { link, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { RumError } from '../errors.js';
import { asNoSpace } from './space.js';
import { tempPath } from './atomic.js';

interface Owner {
  pid: number;
  start: string; // /proc/<pid>/stat field 22: tells a reused PID from the original process
  command: string;
}

async function startTime(pid: number): Promise<string> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces and ')': fields start after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

async function alive(owner: Owner): Promise<boolean> {
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  return (await startTime(owner.pid)) === owner.start;
}

export interface Lock {
  release(): Promise<void>;
}

export interface LockOptions {
  /** Fail at once instead of waiting for the other run. */
  noWait?: boolean;
  /** How long to wait for another run, at most. */
  timeoutMs?: number;
  /** Told once, when this run has to wait. */
  onWait?: (holder: { pid: number; command: string }) => void;
  what: string; // for messages: e.g. 'VM myproj'
  signal?: AbortSignal;
}

export async function acquireLock(path: string, opts: LockOptions): Promise<Lock> {
  const me: Owner = { pid: process.pid, start: await startTime(process.pid), command: process.argv.slice(2).join(' ') };
  const tmp = tempPath(path);
  const record = JSON.stringify(me);
  await writeFile(tmp, record, { mode: 0o644 }).catch(async (err: unknown) => {
    await rm(tmp, { force: true });
    throw asNoSpace(err, path, record.length);
  });
  const deadline = Date.now() + (opts.timeoutMs ?? 10 * 60_000);
  let told = false;
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await link(tmp, path);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const { owner, ino } = await readOwner(path);
      if (owner && !(await alive(owner))) {
        // Take over a dead run's lock, but only the very file we judged (not a newer one).
        if (ino !== undefined && (await stat(path).catch(() => undefined))?.ino === ino) await rm(path, { force: true });
        continue;
      }
      const holder = { pid: owner?.pid ?? 0, command: owner?.command ?? '?' };
      if (opts.noWait)
        throw new RumError(
          'LOCKED',
          `${opts.what} is busy: another rum (pid ${holder.pid}: rum ${holder.command}) is working on it`,
          'wait for it to finish, or run without --no-wait to queue behind it',
        );
      if (!told) opts.onWait?.(holder);
      told = true;
      if (Date.now() > deadline || opts.signal?.aborted)
        throw new RumError('LOCKED', `gave up waiting for pid ${holder.pid} to finish with ${opts.what}`, 'try again later');
      await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** Math.min(attempt, 4), 500)));
    }
  } finally {
    await rm(tmp, { force: true });
  }
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      const { owner } = await readOwner(path);
      if (owner?.pid === me.pid && owner.start === me.start) await rm(path, { force: true });
    },
  };
}

async function readOwner(path: string): Promise<{ owner?: Owner; ino?: number }> {
  try {
    const st = await stat(path);
    const o = (JSON.parse(await readFile(path, 'utf8')) ?? {}) as Partial<Owner>;
    // Any other shape is damage, judged below like a half-written file: never waited on forever.
    if (typeof o.pid !== 'number' || !Number.isInteger(o.pid) || o.pid <= 0 || typeof o.start !== 'string') throw new Error('not an owner');
    return { owner: { pid: o.pid, start: o.start, command: typeof o.command === 'string' ? o.command : '?' }, ino: st.ino };
  } catch {
    // Unreadable or half-written by a crashed run (link() makes it complete, so: foreign damage).
    const st = await stat(path).catch(() => undefined);
    return st ? { owner: { pid: 0, start: 'x', command: '?' }, ino: st.ino } : {};
  }
}
