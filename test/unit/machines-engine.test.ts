// The engine over several machines: rules as templates (one node per machine, `web/disk`), a
// shared node built once and recorded in every machine's state, after: between machines, and a
// failure in one machine leaving the other's work and records whole.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DigestCache, initDigests } from '../../src/graph/digest.js';
import { execute } from '../../src/graph/execute.js';
import { instantiate, type Scope } from '../../src/graph/nodes.js';
import { makePlan, type Engine } from '../../src/graph/plan.js';
import { StateStore } from '../../src/graph/state.js';
import { toy, type ToyCtx } from '../helpers/toy-rules.js';

let dir: string;
before(async () => {
  await initDigests();
  dir = await mkdtemp(join(tmpdir(), 'rum-machines-'));
});
after(() => rm(dir, { recursive: true, force: true }));

// base: the shared image (same `image` = one node); key, disk, ready: each machine's own.
const rules = () => [
  toy('base', { field: 'image', shared: true }),
  toy('key', { field: 'cpus' }),
  toy('disk', { deps: ['base'] }),
  toy('ready', { deps: ['disk', 'key'] }),
];

let n = 0;
function project(names: string[], opts: { after?: [string, string][] } = {}) {
  const root = join(dir, `p${++n}`);
  mkdirSync(root);
  const builds: string[] = [];
  const ctxs = new Map<string, ToyCtx>(names.map((name) => [name, { name, config: { image: 'debian', cpus: '1' }, store: new Map(), builds }]));
  const engine = async (which = names): Promise<Engine<ToyCtx>> => {
    const scopes: Scope<ToyCtx>[] = await Promise.all(
      which.map(async (name) => ({ name, ctx: ctxs.get(name)!, state: await StateStore.open(join(root, `${name}.json`)) })),
    );
    const after = (opts.after ?? []).filter(([a, b]) => which.includes(a.split('/')[0]!) && which.includes(b.split('/')[0]!));
    return { nodes: instantiate(rules(), scopes, { qualify: true, after }), digests: await DigestCache.open(undefined), opts: {} };
  };
  return {
    ctxs,
    builds,
    root,
    plan: async (which?: string[]) => makePlan(await engine(which)),
    run: async (which?: string[]) => {
      builds.length = 0;
      const e = await engine(which);
      return execute(e, await makePlan(e), { concurrency: 4 });
    },
  };
}

test('one node per rule and machine; the shared base once, recorded in each machine', async () => {
  const p = project(['db', 'web']);
  const plan = await p.plan();
  assert.deepEqual(plan.nodes.map((x) => x.id), ['base', 'db/key', 'db/disk', 'db/ready', 'web/key', 'web/disk', 'web/ready']);
  assert.deepEqual(plan.edges.filter(([, b]) => b === 'web/disk'), [['base', 'web/disk']]);
  const r = await p.run();
  assert.equal(r.failure, undefined);
  assert.deepEqual(p.builds.filter((b) => b.endsWith(':base')), ['db:base']);
  for (const m of ['db', 'web']) {
    const rec = JSON.parse(await readFile(join(p.root, `${m}.json`), 'utf8'));
    assert.deepEqual(Object.keys(rec.nodes).sort(), ['base', 'disk', 'key', 'ready'], m);
  }
  assert.deepEqual((await p.run()).outcomes.size, 7);
  assert.deepEqual(p.builds, []);
});

test("a change to one machine's input makes only that machine's nodes stale", async () => {
  const p = project(['db', 'web']);
  await p.run();
  p.ctxs.get('web')!.config.cpus = '2';
  const plan = await p.plan();
  const stale = plan.nodes.filter((x) => x.state !== 'fresh').map((x) => x.id);
  assert.deepEqual(stale, ['web/key', 'web/ready']);
  await p.run();
  assert.deepEqual(p.builds.sort(), ['web:key', 'web:ready']);
});

test('machines with different images get a base each; a machine that joins later adopts the record of its group', async () => {
  const p = project(['db', 'web', 'cache']);
  p.ctxs.get('cache')!.config.image = 'ubuntu';
  await p.run(['db', 'cache']);
  const ids = (await p.plan()).nodes.map((x) => x.id);
  assert.ok(ids.includes('base[db,web]') && ids.includes('base[cache]'), ids.join(' '));
  // web joins: the base it shares with db is not built again, and web's record gains it.
  await p.run();
  assert.deepEqual(p.builds.sort(), ['web:disk', 'web:key', 'web:ready']);
  const rec = JSON.parse(await readFile(join(p.root, 'web.json'), 'utf8'));
  assert.ok(rec.nodes.base, 'web records the shared base');
});

test('after: web/ready waits for db/ready even when web has nothing else to wait for', async () => {
  const p = project(['db', 'web'], { after: [['db/ready', 'web/ready']] });
  const plan = await p.plan();
  assert.ok(plan.edges.some(([a, b]) => a === 'db/ready' && b === 'web/ready'));
  const db = p.ctxs.get('db')!;
  db.delayMs = { ready: 150 };
  const order: string[] = [];
  for (const [name, c] of p.ctxs) {
    c.onBuild = (id) => void order.push(`start ${name}/${id}`);
    c.onBuilt = (id) => void order.push(`end ${name}/${id}`);
  }
  await p.run();
  assert.ok(order.indexOf('start web/ready') > order.indexOf('end db/ready'), order.join('\n'));
  // The other nodes of web did not wait for db: its disk was built while db's ready slept.
  assert.ok(order.indexOf('end web/disk') < order.indexOf('end db/ready'), order.join('\n'));
});

test("a failure in one machine stops that machine's work only; the other's records stay whole", async () => {
  const p = project(['db', 'web']);
  p.ctxs.get('web')!.fail = new Set(['disk']);
  const r = await p.run();
  assert.equal(r.failure?.node, 'web/disk');
  assert.equal(r.outcomes.get('web/ready')?.type, 'skipped');
  assert.equal(r.outcomes.get('db/ready')?.type, 'built');
  const dbRec = JSON.parse(await readFile(join(p.root, 'db.json'), 'utf8'));
  assert.deepEqual(Object.keys(dbRec.nodes).sort(), ['base', 'disk', 'key', 'ready']);
  const webRec = JSON.parse(await readFile(join(p.root, 'web.json'), 'utf8'));
  assert.equal(webRec.nodes.disk, undefined);
  // Fixed: the next run builds what web lacks and nothing of db.
  p.ctxs.get('web')!.fail = undefined;
  await p.run();
  assert.deepEqual(p.builds.sort(), ['web:disk', 'web:ready']);
});
