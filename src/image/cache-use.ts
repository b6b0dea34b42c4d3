// Owns: how `rum gc` and the runs that use the image cache keep out of each other's way.
//   <cache>/gc.lock              held by gc for its whole look and removal (files/lock.ts)
//   <cache>/in-use/<pid>-<r>.json a run that uses the cache (rum up, build, update): written
//                                 under gc.lock, removed when the run ends
// A run registers before it reads the cache, so gc either finished before the run looked, or
// sees its record and refuses: it never removes what a run is about to use. A record whose
// process is gone (pid and start time, as lock.ts judges owners) is removed by gc.
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { RumError } from '../errors.js';
import { writeAtomic } from '../files/atomic.js';
import { acquireLock, lockHolder, ownerRecord, type Lock } from '../files/lock.js';
import { imageCacheDir } from '../paths.js';

export const GC_LOCK = 'gc.lock';
export const IN_USE = 'in-use';

export interface CacheUse {
  release(): Promise<void>;
}

export interface UseOptions {
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** Told once when gc (or another run registering) holds the lock and this run waits. */
  onWait?: (holder: { pid: number; command: string }) => void;
  /** How long to wait for a gc at most. Default 10 minutes. */
  timeoutMs?: number;
}

/** Record that this process uses the image cache until release(); waits for a gc under way. */
export async function useCache(opts: UseOptions = {}): Promise<CacheUse> {
  const dir = imageCacheDir(opts.env);
  await mkdir(join(dir, IN_USE), { recursive: true });
  const record = join(dir, IN_USE, `${process.pid}-${randomBytes(4).toString('hex')}.json`);
  const lock = await acquireLock(join(dir, GC_LOCK), {
    what: 'the image cache',
    timeoutMs: opts.timeoutMs ?? 10 * 60_000,
    ...(opts.onWait ? { onWait: opts.onWait } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  try {
    await writeAtomic(record, await ownerRecord());
  } finally {
    await lock.release();
  }
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      await rm(record, { force: true }).catch(() => undefined); // a left record is cleared once its pid is gone
    },
  };
}

/**
 * gc.lock for a gc, with no run using the cache: records of runs that are gone are removed
 * (unless `keepDead`: a dry run removes nothing); a live one makes gc refuse (the lock is
 * released again).
 */
export async function lockForGc(cacheDir: string, opts: { onWait?: UseOptions['onWait']; timeoutMs?: number; keepDead?: boolean } = {}): Promise<Lock> {
  await mkdir(join(cacheDir, IN_USE), { recursive: true });
  const lock = await acquireLock(join(cacheDir, GC_LOCK), {
    what: 'the image cache',
    timeoutMs: opts.timeoutMs ?? 60_000, // only another gc holds it for long
    ...(opts.onWait ? { onWait: opts.onWait } : {}),
  });
  try {
    const live: { pid: number; command: string; host?: string }[] = [];
    for (const name of (await readdir(join(cacheDir, IN_USE))).filter((n) => n.endsWith('.json'))) {
      const path = join(cacheDir, IN_USE, name);
      const h = await lockHolder(path);
      if (h === 'stale' && !opts.keepDead) await rm(path, { force: true }); // its run is gone (or it is not a record rum wrote)
      else if (typeof h === 'object') live.push(h);
    }
    if (live.length > 0) {
      const runs = live.map((h) => `rum ${h.command} (pid ${h.pid}${h.host ? ` on ${h.host}` : ''})`).join(', ');
      throw new RumError(
        'LOCKED',
        `the image cache is in use by ${runs}: rum gc could remove what ${live.length === 1 ? 'it is' : 'they are'} about to use`,
        `run rum gc again once ${live.length === 1 ? 'it has' : 'they have'} finished; a record left by a run that is gone is cleared by itself (${join(cacheDir, IN_USE)})`,
      );
    }
    return lock;
  } catch (err) {
    await lock.release();
    throw err;
  }
}
