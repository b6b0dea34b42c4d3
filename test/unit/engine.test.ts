// The build-graph engine on in-memory rules: staleness and reasons, early cutoff, parallelism,
// failures, a run killed mid-node, --reset, stateful nodes, the per-VM lock.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RumError } from '../../src/errors.js';
import { acquireLock } from '../../src/files/lock.js';
import { DigestCache, initDigests } from '../../src/graph/digest.js';
import { execute } from '../../src/graph/execute.js';
import { makePlan, planChanges, type PlanOptions } from '../../src/graph/plan.js';
import type { AnyRule } from '../../src/graph/rule.js';
import { StateStore } from '../../src/graph/state.js';
import { toy, type ToyCtx, oneVm } from '../helpers/toy-rules.js';

let dir: string;
before(async () => {
  await initDigests();
  dir = await mkdtemp(join(tmpdir(), 'rum-engine-'));
});
after(() => rm(dir, { recursive: true, force: true }));

let n = 0;
async function rig(rules: AnyRule<ToyCtx>[], config: Record<string, string> = { a: '1', b: '2' }) {
  const file = join(dir, `state-${++n}.json`);
  const ctx: ToyCtx = { config, store: new Map(), builds: [] };
  const engine = async (opts: PlanOptions = {}) =>
    oneVm({
      ctx,
      rules,
      state: await StateStore.open(file),
      digests: await DigestCache.open(undefined),
      opts,
    });
  return {
    ctx,
    file,
    plan: async (opts?: PlanOptions) => makePlan(await engine(opts)),
    run: async (opts?: PlanOptions & { concurrency?: number }) => {
      ctx.builds.length = 0;
      const e = await engine(opts);
      const result = await execute(e, await makePlan(e), { concurrency: opts?.concurrency ?? 4 });
      return { ...result, builds: [...ctx.builds].sort() };
    },
  };
}

const diamond = () => [toy('a', { field: 'a' }), toy('b', { field: 'b' }), toy('c', { deps: ['a', 'b'] }), toy('d', { deps: ['c'] })];

test('a first run builds everything in dependency order; a second run builds nothing', async () => {
  const r = await rig(diamond());
  const first = await r.run();
  assert.deepEqual(first.builds, ['a', 'b', 'c', 'd']);
  assert.equal(r.ctx.store.get('d'), 'd(,c(,a(1),b(2)))');
  const plan = await r.plan();
  assert.equal(planChanges(plan), false);
  assert.deepEqual((await r.run()).builds, []);
});

test('a changed input makes its node stale naming the field, and dependents stale tentatively', async () => {
  const r = await rig(diamond());
  await r.run();
  r.ctx.config.a = 'changed';
  const plan = await r.plan();
  const by = Object.fromEntries(plan.nodes.map((x) => [x.id, x]));
  assert.deepEqual(by.a!.reason, { type: 'input-changed', fields: ['a'] });
  assert.equal(by.a!.action, 'rebuild');
  assert.equal(by.b!.state, 'fresh');
  assert.deepEqual(by.c!.reason, { type: 'upstream-changed', nodes: ['a'] });
  assert.equal(by.c!.tentative, true);
  assert.deepEqual((await r.run()).builds, ['a', 'c', 'd']);
});

test('a changed input is reported as certain even when an upstream is also stale', async () => {
  const rules = [toy('a', { field: 'a' }), toy('b', { deps: ['a'], field: 'b' })];
  const r = await rig(rules);
  await r.run();
  r.ctx.config.a = 'changed';
  r.ctx.config.b = 'changed too';
  const b = (await r.plan()).nodes.find((x) => x.id === 'b')!;
  assert.deepEqual(b.reason, { type: 'input-changed', fields: ['b'] });
  assert.notEqual(b.tentative, true);
  assert.equal(b.action, 'rebuild');
});

test('early cutoff: a rebuilt node with the same output leaves its dependents fresh', async () => {
  // c's output ignores its inputs, so rebuilding it after a changes gives the same digest.
  const rules = [toy('a', { field: 'a' }), toy('b', { field: 'b' }), toy('c', { deps: ['a', 'b'], transform: () => 'constant' }), toy('d', { deps: ['c'] })];
  const r = await rig(rules);
  await r.run();
  r.ctx.config.a = 'changed';
  const res = await r.run();
  assert.deepEqual(res.builds, ['a', 'c']);
  assert.equal(res.outcomes.get('c')?.type, 'cutoff');
  assert.equal(res.outcomes.get('d')?.type, 'fresh');
});

test('a recipe version change says so', async () => {
  const r = await rig([toy('a', { field: 'a' })]);
  await r.run();
  const bumped = await rig([{ ...toy('a', { field: 'a' }), version: 2 }]);
  await bumped.run(); // its own state; now compare through the first rig's state file
  const e = oneVm({
    ctx: r.ctx,
    rules: [{ ...toy('a', { field: 'a' }), version: 2 }],
    state: await StateStore.open(r.file),
    digests: await DigestCache.open(undefined),
    opts: {},
  });
  assert.deepEqual((await makePlan(e)).nodes[0]!.reason, { type: 'recipe-changed' });
});

test('a failed check rebuilds a node whose key is unchanged', async () => {
  const r = await rig(diamond());
  await r.run();
  r.ctx.store.delete('b');
  const plan = await r.plan();
  assert.deepEqual(plan.nodes.find((x) => x.id === 'b')!.reason, { type: 'check-failed', why: 'b is gone' });
  assert.deepEqual((await r.run()).builds, ['b']); // same output: c and d cut off
});

test('two independent slow rules really overlap', async () => {
  const r = await rig(diamond());
  r.ctx.delayMs = { a: 300, b: 300 };
  const spans: Record<string, [number, number]> = {};
  r.ctx.onBuild = (id) => void (spans[id] = [performance.now(), 0]);
  const res = await r.run();
  assert.deepEqual(res.builds, ['a', 'b', 'c', 'd']);
  // b started before a finished (a takes 300 ms): they ran at the same time.
  assert.ok(spans.b![0] < spans.a![0] + 300, 'b started while a was still running');
});

test('a failure stops new work, lets running work finish, and names the node', async () => {
  const rules = [toy('a', { field: 'a' }), toy('b', { field: 'b' }), toy('c', { deps: ['a'] }), toy('d', { deps: ['b'] })];
  const r = await rig(rules);
  r.ctx.fail = new Set(['a']);
  r.ctx.delayMs = { b: 100 };
  const res = await r.run({ concurrency: 2 });
  assert.equal(res.failure?.node, 'a');
  assert.match(String((res.failure?.error as Error).message), /a exploded/);
  assert.equal(res.outcomes.get('b')?.type, 'built'); // already running: finished and recorded
  assert.deepEqual(res.outcomes.get('c'), { type: 'skipped', because: 'a' });
  assert.equal(res.outcomes.get('d')?.type, 'skipped');
  const state = JSON.parse(await readFile(r.file, 'utf8'));
  assert.deepEqual(Object.keys(state.nodes).sort(), ['b']);
  r.ctx.fail = undefined;
  assert.deepEqual((await r.run()).builds, ['a', 'c', 'd']);
});

test('a run killed mid-node leaves a valid record; the next run builds only the rest', async () => {
  const file = join(dir, 'killed.json');
  const child = spawn(process.execPath, [fileURLToPath(new URL('../helpers/engine-child.js', import.meta.url)), file, 'c'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('child never reached node c')), 10_000);
    child.stdout.on('data', (d: Buffer) => d.toString().includes('hanging in c') && (clearTimeout(t), resolve()));
  });
  child.kill('SIGKILL');
  await new Promise((r) => child.on('exit', r));
  const state = JSON.parse(await readFile(file, 'utf8'));
  assert.deepEqual(Object.keys(state.nodes).sort(), ['a', 'b']);

  const ctx: ToyCtx = { config: { a: '1', b: '2' }, store: new Map(), builds: [] };
  const rules = [toy('a', { field: 'a' }), toy('b', { field: 'b' }), toy('c', { deps: ['a', 'b'] }), toy('d', { deps: ['c'] })].map(
    (r) => ({ ...r, check: undefined }),
  );
  const e = oneVm({ ctx, rules, state: await StateStore.open(file), digests: await DigestCache.open(undefined), opts: {} });
  await execute(e, await makePlan(e));
  assert.deepEqual(ctx.builds.sort(), ['c', 'd']);
});

test('--reset invalidates only resettable nodes; a stateful node is kept, never rebuilt silently', async () => {
  const rules = [
    toy('image', { field: 'a' }),
    toy('overlay', { deps: ['image'], kind: 'stateful', resettable: true }),
    toy('seed', { field: 'b', resettable: true }),
    toy('xml', { deps: ['overlay', 'seed'], transform: () => 'xml' }),
  ];
  const r = await rig(rules);
  await r.run();

  r.ctx.config.a = 'new-image';
  const plan = await r.plan();
  const overlay = plan.nodes.find((x) => x.id === 'overlay')!;
  assert.equal(overlay.action, 'kept-needs-reset');
  assert.equal(planChanges(plan), true);
  const res = await r.run();
  assert.deepEqual(res.builds, ['image']);
  assert.deepEqual(res.outcomes.get('overlay'), { type: 'kept', action: 'kept-needs-reset' });

  const reset = await r.plan({ reset: true });
  assert.deepEqual(
    reset.nodes.filter((x) => x.reason?.type === 'reset').map((x) => x.id),
    ['overlay', 'seed'],
  );
  const res2 = await r.run({ reset: true });
  assert.deepEqual(res2.builds, ['overlay', 'seed', 'xml']);
  assert.equal(res2.outcomes.get('xml')?.type, 'cutoff'); // same document: its dependents stay fresh
  assert.equal(res2.outcomes.get('image')?.type, 'fresh');
});

test('build targets: only the target and what it needs', async () => {
  const r = await rig(diamond());
  const plan = await r.plan({ targets: ['c'] });
  assert.deepEqual(plan.nodes.map((x) => x.id).sort(), ['a', 'b', 'c']);
  await assert.rejects(r.plan({ targets: ['nope'] }), (err: RumError) => err.code === 'USAGE');
});

test('cycles and unknown dependencies are refused', async () => {
  const r = await rig([toy('x', { deps: ['y'] }), toy('y', { deps: ['x'] })]);
  await assert.rejects(r.plan(), /cycle: x -> y -> x/);
  const u = await rig([toy('x', { deps: ['ghost'] })]);
  await assert.rejects(u.plan(), /unknown rule ghost/);
});

test('the lock: a second run waits, or fails at once with noWait; a dead holder is taken over', async () => {
  const path = join(dir, 'lock');
  const first = await acquireLock(path, { what: 'VM t' });
  await assert.rejects(acquireLock(path, { what: 'VM t', noWait: true }), (err: RumError) => err.code === 'LOCKED' && /busy/.test(err.message));
  let waited = false;
  const second = acquireLock(path, { what: 'VM t', onWait: () => (waited = true) });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(waited, true);
  await first.release();
  const lock2 = await second;
  await lock2.release();

  // A lock left by a process that no longer exists.
  const { writeFile } = await import('node:fs/promises');
  await writeFile(path, JSON.stringify({ pid: 2 ** 22 - 1, start: '1', command: 'up' }));
  const taken = await acquireLock(path, { what: 'VM t', noWait: true });
  await taken.release();
});
