// Waiting is bounded in tries and in time, and an abort ends it.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoff, pollUntil, sleep } from '../../src/files/wait.js';

test('pollUntil: the first value that is not undefined or false, after as many tries as it took', async () => {
  let n = 0;
  const got = await pollUntil(async ({ tries }) => (++n === 3 ? `done at ${tries}` : n === 1 ? false : undefined), { everyMs: 1, maxTries: 5, timeoutMs: 5000 });
  assert.equal(got, 'done at 3');
});

test('pollUntil gives up: out of tries, or out of time with a last try at the deadline', async () => {
  let tries = 0;
  assert.equal(await pollUntil(async () => void tries++, { everyMs: 1, maxTries: 4, timeoutMs: 5000 }), undefined);
  assert.equal(tries, 4);
  const left: number[] = [];
  const started = performance.now();
  assert.equal(await pollUntil(async ({ leftMs }) => void left.push(leftMs), { everyMs: 1000, maxTries: 100, timeoutMs: 150 }), undefined);
  assert.ok(performance.now() - started < 1000, 'a wait is cut short at the deadline');
  assert.equal(left.length, 2);
  assert.equal(left[1], 0);
});

test('pollUntil resolves undefined when aborted; sleep rejects with the caller\'s reason', async () => {
  const ac = new AbortController();
  setTimeout(() => ac.abort(new Error('stop')), 50);
  const started = performance.now();
  assert.equal(await pollUntil(async () => undefined, { everyMs: 10_000, maxTries: 10, timeoutMs: 60_000, signal: ac.signal }), undefined);
  assert.ok(performance.now() - started < 5000);
  await assert.rejects(sleep(10_000, ac.signal), /stop/);
  await sleep(1);
});

test('backoff doubles from the first wait up to the cap', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 200].map((n) => backoff(n, 50, 500)), [50, 100, 200, 400, 500, 500]);
  assert.equal(backoff(99, 0, 500), 0);
});
