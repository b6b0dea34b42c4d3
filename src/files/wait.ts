// Owns: waiting: a sleep that an abort ends, a backoff, and polling bounded in both tries and time.
// Not: what is waited for, or what a caller does when the wait gives up.
import { setTimeout as delay } from 'node:timers/promises';

/** Resolves after `ms`; rejects with the signal's reason (the caller's, not timers' AbortError) once aborted. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await delay(ms, undefined, { signal });
  } catch (err) {
    throw signal?.aborted ? signal.reason : err;
  }
}

/** The wait before retry `n` (from 1): `firstMs`, doubled each time, at most `maxMs`. */
export function backoff(n: number, firstMs: number, maxMs: number): number {
  return Math.min(firstMs * 2 ** Math.min(n - 1, 30), maxMs);
}

export interface PollOptions {
  /** The wait after try `n` (from 1): fixed, or e.g. `(n) => backoff(n, 50, 500)`. */
  everyMs: number | ((n: number) => number);
  /** The last try is made at this deadline at the latest (a wait is cut short to meet it). */
  timeoutMs: number;
  maxTries: number;
  /** Aborting ends the wait as running out of time does: check `signal.aborted` to tell. */
  signal?: AbortSignal;
}

/**
 * Calls `check` until it returns a value other than undefined or false, and resolves with that.
 * Resolves undefined once it gives up: out of tries, out of time, or aborted. A throw from
 * `check` rejects at once.
 */
export async function pollUntil<T>(
  check: (at: { tries: number; leftMs: number }) => Promise<T | false | undefined>,
  opts: PollOptions,
): Promise<T | undefined> {
  const deadline = performance.now() + opts.timeoutMs;
  const left = () => Math.max(0, Math.floor(deadline - performance.now())); // timers may fire a fraction early
  for (let tries = 1; !opts.signal?.aborted; tries++) {
    const got = await check({ tries, leftMs: left() });
    if (got !== undefined && got !== false) return got;
    if (tries >= opts.maxTries || left() === 0) break;
    const ms = typeof opts.everyMs === 'number' ? opts.everyMs : opts.everyMs(tries);
    await sleep(Math.min(ms, left()), opts.signal).catch(() => undefined); // aborted: the loop ends
  }
  return undefined;
}
