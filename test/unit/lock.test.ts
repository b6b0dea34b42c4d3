// The lock file shared by a project's runs and the image cache's downloads: a dead owner on this
// host is taken over; an owner on another host (a cache on a network filesystem) never is.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { RumError } from '../../src/errors.js';
import { acquireLock } from '../../src/files/lock.js';

async function lockFile(t: test.TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rum-lock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return join(dir, 'lock');
}

const dead = () => spawnSync('true').pid; // exited: its PID names no process (barring reuse)

test('a dead owner on this host is taken over; one on another host is waited for, then given up on', async (t) => {
  const path = await lockFile(t);
  await writeFile(path, JSON.stringify({ pid: dead(), start: '1', host: hostname(), command: 'up' }));
  const taken = await acquireLock(path, { what: 'VM t', noWait: true });
  assert.equal(JSON.parse(await readFile(path, 'utf8')).host, hostname(), 'the new owner records its host');
  await taken.release();

  await writeFile(path, JSON.stringify({ pid: dead(), start: '1', host: 'elsewhere.example', command: 'up' }));
  await assert.rejects(acquireLock(path, { what: 'VM t', noWait: true }), (err: RumError) => {
    assert.equal(err.code, 'LOCKED');
    assert.match(err.message, /busy: another rum \(pid \d+ on elsewhere\.example: rum up\)/);
    return true;
  });
  const waitedFor: number[] = [];
  await assert.rejects(acquireLock(path, { what: 'the download of http://x/img', timeoutMs: 300, onWait: (h) => waitedFor.push(h.pid) }), (err: RumError) => {
    assert.equal(err.code, 'LOCKED');
    assert.match(err.message, /^gave up waiting for pid \d+ on elsewhere\.example to finish with the download of http:\/\/x\/img$/);
    assert.ok(err.hint?.includes(path), err.hint);
    return true;
  });
  assert.equal(waitedFor.length, 1, 'told once');
  assert.match(await readFile(path, 'utf8'), /elsewhere\.example/, 'the other host\'s lock is left alone');
});

test('a lock without a start time (the image cache\'s older format) is judged by its PID', async (t) => {
  const path = await lockFile(t);
  await writeFile(path, JSON.stringify({ pid: dead(), host: hostname(), token: 'x' }));
  await (await acquireLock(path, { what: 'VM t', noWait: true })).release();
  await writeFile(path, JSON.stringify({ pid: process.pid, host: hostname(), token: 'x' }));
  await assert.rejects(acquireLock(path, { what: 'VM t', noWait: true }), /busy/);
});

test('aborting a wait gives up as the timeout does, and release leaves another owner\'s lock', async (t) => {
  const path = await lockFile(t);
  const first = await acquireLock(path, { what: 'VM t' });
  const ac = new AbortController();
  const started = Date.now();
  setTimeout(() => ac.abort(), 100);
  await assert.rejects(acquireLock(path, { what: 'VM t', signal: ac.signal }), /gave up waiting for pid \d+ to finish with VM t/);
  assert.ok(Date.now() - started < 2000);
  // Its lock taken over meanwhile (as by a run that judged it dead): release leaves the new owner's.
  await writeFile(path, JSON.stringify({ pid: process.pid, start: 'other', host: 'elsewhere.example', command: 'up' }));
  await first.release();
  assert.match(await readFile(path, 'utf8'), /elsewhere/);
});
