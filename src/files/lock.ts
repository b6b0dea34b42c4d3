// Owns: one holder at a time of a lock file: a project's runs, or one URL's download in the shared
// image cache. The file holds the owner's PID, start time and host; it is created with link()
// (atomic, fails if present, also on NFS) and a dead owner's lock is taken over. An owner on
// another host is never judged dead: a shared cache may be on a network filesystem, and that
// host's processes cannot be seen from here.
import { link, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { RumError } from '../errors.js';
import { asNoSpace } from './space.js';
import { tempPath } from './atomic.js';
import { backoff, pollUntil } from './wait.js';

interface Owner {
  pid: number;
  start?: string; // /proc/<pid>/stat field 22: tells a reused PID from the original process
  host?: string; // absent from locks written before the host was recorded: judged as this host's
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
  if (owner.host !== undefined && owner.host !== hostname()) return true;
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  return owner.start === undefined || (await startTime(owner.pid)) === owner.start;
}

/** "pid 123", or "pid 123 on otherhost". */
function who(owner: Owner | undefined): string {
  if (!owner) return 'another rum';
  return `pid ${owner.pid}${owner.host !== undefined && owner.host !== hostname() ? ` on ${owner.host}` : ''}`;
}

export interface Lock {
  release(): Promise<void>;
}

export interface LockOptions {
  /** Fail at once instead of waiting for the other run. */
  noWait?: boolean;
  /** How long to wait for another run, at most. Default 10 minutes. */
  timeoutMs?: number;
  /** Told once, when this run has to wait. */
  onWait?: (holder: { pid: number; command: string }) => void;
  what: string; // for messages: e.g. 'VM myproj', 'the download of <url>'
  /** Aborting while waiting gives up as the timeout does. */
  signal?: AbortSignal;
}

/** This process as a lock file names its owner; also the body of other records judged the same
 * way (the image cache's use records, src/image/cache-use.ts). */
export async function ownerRecord(): Promise<string> {
  const me: Owner = { pid: process.pid, start: await startTime(process.pid), host: hostname(), command: process.argv.slice(2).join(' ') };
  return JSON.stringify(me);
}

/**
 * Who holds the lock (or owner record) at `path`, judged as acquireLock judges it: its owner while
 * that process lives; 'stale' when the file is damaged or its owner dead (a taker may have it);
 * undefined when there is no file.
 */
export async function lockHolder(path: string): Promise<{ pid: number; command: string; host?: string } | 'stale' | undefined> {
  const { owner, ino } = await readOwner(path);
  if (ino === undefined) return undefined;
  if (!owner || !(await alive(owner))) return 'stale';
  return { pid: owner.pid, command: owner.command, ...(owner.host !== undefined && owner.host !== hostname() ? { host: owner.host } : {}) };
}

export async function acquireLock(path: string, opts: LockOptions): Promise<Lock> {
  const tmp = tempPath(path);
  const record = await ownerRecord();
  await writeFile(tmp, record, { mode: 0o644 }).catch(async (err: unknown) => {
    await rm(tmp, { force: true });
    throw asNoSpace(err, path, record.length);
  });
  const linked = () =>
    link(tmp, path).then(
      () => true,
      (err: NodeJS.ErrnoException) => (err.code === 'EEXIST' ? false : Promise.reject(err)),
    );
  let holder: Owner | undefined;
  const attempt = async (): Promise<boolean> => {
    if (await linked()) return true;
    const { owner, ino } = await readOwner(path);
    if (!owner || !(await alive(owner))) {
      // Gone, damaged or left by a dead run: take it over, but only the very file we judged (not a newer one).
      if (ino !== undefined && (await stat(path).catch(() => undefined))?.ino === ino) await rm(path, { force: true });
      return linked();
    }
    if (opts.noWait)
      throw new RumError(
        'LOCKED',
        `${opts.what} is busy: another rum (${who(owner)}: rum ${owner.command}) is working on it`,
        'wait for it to finish, or run without --no-wait to queue behind it',
      );
    if (!holder) opts.onWait?.({ pid: owner.pid, command: owner.command });
    holder = owner;
    return false;
  };
  const timeoutMs = opts.timeoutMs ?? 10 * 60_000;
  try {
    const mine = await pollUntil(attempt, { everyMs: (n) => backoff(n, 50, 500), timeoutMs, maxTries: timeoutMs / 50, signal: opts.signal });
    if (!mine)
      throw new RumError('LOCKED', `gave up waiting for ${who(holder)} to finish with ${opts.what}`, `try again later; if no rum is running, delete ${path}`);
  } finally {
    await rm(tmp, { force: true });
  }
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      if ((await readFile(path, 'utf8').catch(() => undefined)) === record) await rm(path, { force: true });
    },
  };
}

/** The lock's owner and inode; no owner: damaged (never waited on forever); neither: gone. */
async function readOwner(path: string): Promise<{ owner?: Owner; ino?: number }> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return {};
  try {
    const o = (JSON.parse(await readFile(path, 'utf8')) ?? {}) as Partial<Owner>;
    const optional = (v: unknown) => (typeof v === 'string' ? v : undefined);
    if (typeof o.pid !== 'number' || !Number.isInteger(o.pid) || o.pid <= 0) throw new Error('not an owner');
    return { owner: { pid: o.pid, start: optional(o.start), host: optional(o.host), command: optional(o.command) ?? '?' }, ino: st.ino };
  } catch {
    // Unreadable or not an owner: foreign damage, since link() only ever shows a whole file.
    return { ino: st.ino };
  }
}
