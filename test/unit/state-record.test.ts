// A damaged state record (not JSON, or JSON of the wrong shape) never crashes rum and never
// costs the VM's disk: the engine keeps what is sound in it, says once what it gave up, and
// adopts the VM's disk and keys as they are; commands that only read it refuse it plainly. No
// message ever carries the file's own bytes to the terminal.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { RumError } from '../../src/errors.js';
import { DigestCache, digestOf, initDigests } from '../../src/graph/digest.js';
import { describeWarning, type RunEvent } from '../../src/graph/events.js';
import { execute } from '../../src/graph/execute.js';
import { makePlan } from '../../src/graph/plan.js';
import { defineRule, type AnyRule } from '../../src/graph/rule.js';
import { salvageRecord } from '../../src/graph/state-schema.js';
import { plainlySound, StateStore } from '../../src/graph/state.js';
import { fakeLibvirtd } from '../helpers/fake-libvirtd.js';
import { run, scratchProject, type Rig } from '../helpers/rig.js';
import { tally } from '../helpers/tally.js';
import { toy, type ToyCtx, oneVm } from '../helpers/toy-rules.js';

let dir: string;
before(async () => {
  await initDigests();
  dir = await mkdtemp(join(tmpdir(), 'rum-state-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const sound = (nodes: Record<string, unknown> = {}, generation = 3) => ({ version: 1, generation, nodes });
const rec = (extra: Record<string, unknown> = {}) => ({ key: 'k', fields: { 'input:a': 'd' }, output: 'o', time: '2026-01-01T00:00:00.000Z', ...extra });
// ESC and a right-to-left override: what a terminal would obey if rum printed them.
const HOSTILE = '\u001b]0;owned\u0007\u001b[2J\u202e';

let n = 0;
async function recordFile(content: unknown): Promise<string> {
  const file = join(dir, `state-${++n}.json`);
  await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

const CASES: { what: string; content: unknown; problem: RegExp; dropped: string[] | 'all'; generation: number }[] = [
  { what: 'not JSON', content: `${HOSTILE}{"version":1`, problem: /^it is not JSON$/, dropped: 'all', generation: 1 },
  { what: 'nodes: null', content: { version: 1, generation: 3, nodes: null }, problem: /^nodes: expected an object, found null$/, dropped: 'all', generation: 3 },
  { what: 'not an object', content: [1, 2], problem: /^the record: expected an object, found a list$/, dropped: 'all', generation: 1 },
  { what: 'a node without its key', content: sound({ a: rec(), b: rec({ key: undefined }) }), problem: /^nodes\.b\.key: missing$/, dropped: ['b'], generation: 3 },
  { what: 'fields of the wrong type', content: sound({ a: rec({ fields: 'x', output: 5 }) }), problem: /^nodes\.a\.fields: expected an object, found a string \(and 1 more\)$/, dropped: ['a'], generation: 3 },
  { what: 'data of the wrong type', content: sound({ a: rec({ data: 'oops' }), b: rec({ data: { port: 22 } }) }), problem: /^nodes\.a\.data: expected an object, found a string$/, dropped: ['a'], generation: 3 },
  { what: 'a hostile node id', content: sound({ [HOSTILE]: {} }), problem: /^nodes\["\\u001b\]0;owned\\u0007\\u001b\[2J\u202e"\]\.key: missing/, dropped: [HOSTILE], generation: 3 },
  { what: 'the generation', content: { version: 1, generation: 0, nodes: { a: rec() } }, problem: /^generation: expected more than 0$/, dropped: [], generation: 1 },
  { what: 'the version', content: { version: '1', generation: 2, nodes: {} }, problem: /^version: expected 1, found a string$/, dropped: [], generation: 2 },
];

test('a damaged record: refused by default, with rum\'s own words for what is wrong', async () => {
  for (const c of CASES) {
    const file = await recordFile(c.content);
    await assert.rejects(StateStore.open(file), (err: unknown) => {
      assert.ok(err instanceof RumError, `${c.what}: ${String(err)}`);
      assert.equal(err.code, 'STATE', c.what);
      assert.equal(err.message.startsWith(`the state record ${file} is not readable: `), true, c.what);
      assert.match(err.message.slice(`the state record ${file} is not readable: `.length), c.problem, c.what);
      assert.doesNotMatch(err.message, /owned\u0007|\u001b\[2J/, `${c.what}: the file's bytes are not echoed`);
      assert.match(err.hint ?? '', /rum up/, c.what);
      return true;
    });
  }
  tally('fault', 'a damaged state record read by a command that only reads it', CASES.length, CASES.length);
});

test('a damaged record salvaged: what is sound kept, the rest said, the generation kept when it can be', async () => {
  for (const c of CASES) {
    const file = await recordFile(c.content);
    const s = await StateStore.open(file, { ifDamaged: 'salvage' });
    assert.ok(s.damage, c.what);
    assert.match(s.damage.problem, c.problem, c.what);
    assert.deepEqual(s.damage.dropped, c.dropped, c.what);
    assert.equal(s.generation, c.generation, c.what);
    assert.equal(s.damage.generationLost, c.generation === 1 && c.what !== 'the version', c.what);
    for (const id of ['a', 'b']) {
      const kept = c.dropped !== 'all' && !c.dropped.includes(id) && Object.hasOwn((c.content as { nodes?: object }).nodes ?? {}, id);
      assert.equal(s.get(id) !== undefined, kept, `${c.what}: ${id}`);
    }
  }
  // A sound record is not damage, and a newer rum's record is not this one's to reinterpret.
  assert.equal((await StateStore.open(await recordFile(sound({ a: rec({ data: { x: [1, null] } }) })), { ifDamaged: 'salvage' })).damage, undefined);
  await assert.rejects(StateStore.open(await recordFile({ version: 2, nodes: {} }), { ifDamaged: 'salvage' }), /written by a newer rum \(format 2\)/);
  tally('fault', 'a damaged state record salvaged by the engine', CASES.length, CASES.length);
});

test('the quick look that spares a sound record the schema is never laxer than the schema', () => {
  const base = () => sound({ a: rec({ data: { host: 'h', port: 22, list: [1, { x: null }] } }), b: rec() });
  assert.equal(plainlySound(base()), true);
  assert.equal(salvageRecord(base()).damage, undefined);
  // Every value in the record, replaced by every kind of JSON value and deleted: whatever the
  // quick look passes, the schema must pass too.
  const kinds: unknown[] = [undefined, null, 0, 1, -1, 1.5, 2 ** 60, '', 'x', true, [], ['x'], {}, { k: 'v' }];
  const paths: (string | number)[][] = [];
  const walk = (v: unknown, at: (string | number)[]) => {
    paths.push(at);
    if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, [...at, k]);
  };
  walk(base(), []);
  let tried = 0;
  for (const at of paths)
    for (const kind of kinds) {
      const v = base() as Record<string, unknown>;
      if (at.length === 0) continue;
      let o: Record<string | number, unknown> = v;
      for (const k of at.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
      if (kind === undefined) delete o[at.at(-1)!];
      else o[at.at(-1)!] = kind;
      tried++;
      const read = JSON.parse(JSON.stringify(v)) as unknown; // as a file gives it: no holes, no undefined
      if (plainlySound(read)) assert.equal(salvageRecord(read).damage, undefined, `${JSON.stringify(at)} = ${JSON.stringify(kind)}`);
    }
  assert.ok(tried > 300);
  for (const c of CASES) if (typeof c.content !== 'string') assert.equal(plainlySound(c.content), false, c.what);
});

test('the warning: what was given up, worded once, its list of ids kept short', () => {
  const w = (dropped: string[] | 'all', generationLost = false) => describeWarning({ type: 'state-damaged', file: '/vm/state.json', problem: 'P', dropped, generationLost });
  assert.equal(w('all'), "the state record /vm/state.json is damaged (P): all its nodes count as unrecorded, and the VM's disk and keys are adopted as they are. `rum up` records afresh and keeps the damaged file as state.json.damaged");
  assert.match(w(['overlay']), /\(P\): the records of overlay are dropped: those nodes count as unrecorded/);
  assert.match(w([], true), /\(P\): its node records are sound and kept; its --reset count is lost too/);
  const many = w(['x'.repeat(100), ...Array.from({ length: 9 }, (_, i) => `n${i}`)]);
  assert.match(many, new RegExp(`the records of ${'x'.repeat(40)}…, n0, n1, n2, n3 and 5 more are dropped`));
});

test('the first write over a salvaged record keeps the damaged one beside it', async () => {
  const file = await recordFile({ version: 1, generation: 4, nodes: null });
  const s = await StateStore.open(file, { ifDamaged: 'salvage' });
  await s.record('a', rec() as never);
  await s.record('b', rec() as never);
  assert.equal(await readFile(`${file}.damaged`, 'utf8'), JSON.stringify({ version: 1, generation: 4, nodes: null }));
  const again = await StateStore.open(file);
  assert.equal(again.damage, undefined);
  assert.equal(again.generation, 4);
  assert.ok(again.get('a') && again.get('b'));
});

/** A stateful toy whose artifact is a real file: adopted when it exists without a record. */
function statefulFile(path: string): AnyRule<ToyCtx> {
  return defineRule<ToyCtx, Record<string, never>>({
    id: 'disk',
    kind: 'stateful',
    version: 1,
    deps: [{ id: 'base' }],
    inputs: () => ({}),
    output: () => path,
    build: async ({ ctx, action }) => {
      ctx.builds.push(`disk:${action}`);
      if (action !== 'adopt') await writeFile(path, 'a new, empty disk');
      return { digest: digestOf(await readFile(path, 'utf8')) };
    },
  });
}

test('the engine on a damaged record: warned once, the stateful artifact adopted, not made again', async () => {
  const disk = join(dir, 'disk.img');
  await writeFile(disk, 'the guest\'s data');
  const file = await recordFile({ version: 1, generation: 2, nodes: null });
  const ctx: ToyCtx = { config: { a: '1' }, store: new Map(), builds: [] };
  const base = { ctx, rules: [toy('base', { field: 'a' }), statefulFile(disk)], state: await StateStore.open(file, { ifDamaged: 'salvage' }), digests: await DigestCache.open(undefined), opts: {} };
  const e = oneVm(base);
  const plan = await makePlan(e);
  assert.deepEqual(plan.warnings?.map((w) => w.type), ['state-damaged']);
  const byId = Object.fromEntries(plan.nodes.map((x) => [x.id, x]));
  assert.deepEqual(byId.disk!.reason, { type: 'unrecorded' });
  assert.equal(byId.disk!.action, 'adopt');
  const events: RunEvent[] = [];
  const result = await execute(e, plan, { onEvent: (ev) => events.push(ev) });
  assert.equal(result.failure, undefined);
  assert.deepEqual(ctx.builds, ['base', 'disk:adopt']);
  assert.equal(await readFile(disk, 'utf8'), 'the guest\'s data');
  assert.equal(events.filter((ev) => ev.type === 'warning').length, 1);

  // Recorded now: the next plan is quiet and fresh; and with no file, no record: built.
  const next = oneVm({ ...base, state: await StateStore.open(file, { ifDamaged: 'salvage' }) });
  const quiet = await makePlan(next);
  assert.equal(quiet.warnings, undefined);
  assert.deepEqual(quiet.nodes.map((x) => x.state), ['fresh', 'fresh']);
  const fresh = await makePlan(oneVm({ ...base, rules: [toy('base', { field: 'a' }), statefulFile(join(dir, 'no-disk.img'))], state: await StateStore.open(undefined) }));
  assert.deepEqual(fresh.nodes.find((x) => x.id === 'disk')!.reason, { type: 'missing' });
});

// ---- the commands, on a VM with a real disk (a qcow2 overlay of a tiny local base) ----

async function builtVm(t: test.TestContext): Promise<Rig> {
  const daemon = await fakeLibvirtd(t, 'no-domains'); // a libvirt with no domain of this name
  const p = await scratchProject(t, { image: { base: 'base.qcow2' }, libvirt: { uri: daemon.uri }, network: { mode: 'user' } });
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(p.dir, 'base.qcow2'), '64M']);
  const b = await p.rum('build', 'overlay', 'ssh-keys');
  assert.equal(b.code, 0, b.stderr);
  return p;
}

const fingerprintOf = async (path: string) => {
  const st = await stat(path);
  return `${st.ino}:${st.mtimeMs}:${await readFile(path, 'utf8').then((s) => digestOf(s))}`;
};

test('rum on a record with nodes: null: dry run and status say so and go on; up adopts the disk, keeps the damaged file', async (t) => {
  const p = await builtVm(t);
  const disk = await fingerprintOf(p.vmFile('disk.qcow2'));
  const key = await readFile(p.vmFile('id_ed25519'), 'utf8');
  const damaged = JSON.stringify({ version: 1, generation: 1, nodes: null });
  await writeFile(p.vmFile('state.json'), damaged);

  const dry = await p.rum('up', '--dry-run', '--json');
  assert.equal(dry.code, 10, dry.stderr);
  const plan = JSON.parse(dry.stdout);
  assert.deepEqual(plan.warnings.map((w: { type: string; problem: string; dropped: unknown }) => [w.type, w.problem, w.dropped]), [['state-damaged', 'nodes: expected an object, found null', 'all']]);
  for (const id of ['overlay', 'ssh-keys']) {
    const node = plan.nodes.find((x: { id: string }) => x.id === id);
    assert.deepEqual([node.action, node.reason.type], ['adopt', 'unrecorded'], id);
  }
  assert.equal(dry.stderr.match(/warning: the state record .*state\.json is damaged \(nodes: expected an object, found null\)/g)?.length, 1, dry.stderr);

  const status = await p.rum('status');
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /not created yet/);
  assert.match(status.stdout, /overlay .*stale → adopt/);
  assert.equal(status.stderr.match(/warning: the state record/g)?.length, 1, status.stderr);
  assert.doesNotMatch(status.stderr + dry.stderr, /TypeError|hit a bug/);

  const up = await p.rum('build', 'overlay', 'ssh-keys');
  assert.equal(up.code, 0, up.stderr);
  assert.equal(up.stderr.match(/warning: the state record/g)?.length, 1, up.stderr);
  assert.equal(await fingerprintOf(p.vmFile('disk.qcow2')), disk, 'the same disk, untouched');
  assert.equal(await readFile(p.vmFile('id_ed25519'), 'utf8'), key, 'the same key');
  assert.equal(await readFile(p.vmFile('state.json.damaged'), 'utf8'), damaged);

  const again = await p.rum('build', 'overlay', 'ssh-keys', '--json');
  assert.equal(again.code, 0, again.stderr);
  assert.doesNotMatch(again.stderr, /warning/);
  assert.deepEqual(JSON.parse(again.stdout).built, []);
  tally('fault', 'state record with nodes: null under up --dry-run, status and up', 3, 3);
});

test('rum on garbage and hostile keys: nothing of the file reaches the terminal raw', async (t) => {
  const p = await builtVm(t);
  const good = JSON.parse(await readFile(p.vmFile('state.json'), 'utf8'));
  const raw = (s: string) => /[\u001b\u0007\u202e]/.test(s);

  await writeFile(p.vmFile('state.json'), `${HOSTILE}garbage`);
  const dry = await p.rum('up', '--dry-run');
  assert.equal(dry.code, 10, dry.stderr);
  assert.match(dry.stderr, /is damaged \(it is not JSON\)/);
  assert.ok(!raw(dry.stderr + dry.stdout), dry.stderr);
  // A command that only reads the record (exec looks up the guest's address there) refuses it.
  const exec = await p.rum('exec', '--', 'true');
  assert.equal(exec.code, 7, exec.stderr);
  assert.match(exec.stderr, /error: the state record .*state\.json is not readable: it is not JSON\nhint: `rum up` keeps what is sound/);
  assert.ok(!raw(exec.stderr), exec.stderr);

  // JSON with a hostile node id and a node missing its key: the rest is kept (base-image stays fresh).
  good.nodes[HOSTILE] = {};
  delete good.nodes.overlay.key;
  await writeFile(p.vmFile('state.json'), JSON.stringify(good));
  const partial = await p.rum('up', '--dry-run', '--json');
  assert.equal(partial.code, 10, partial.stderr);
  assert.ok(!raw(partial.stderr), partial.stderr);
  assert.match(partial.stderr, /the records of .*overlay.* are dropped/);
  assert.match(partial.stderr, /\\u001b\]0;owned/, 'the hostile key is shown escaped');
  const nodes = JSON.parse(partial.stdout).nodes as { id: string; state: string; action: string }[];
  assert.equal(nodes.find((x) => x.id === 'base-image')!.state, 'fresh');
  assert.equal(nodes.find((x) => x.id === 'overlay')!.action, 'adopt');
  tally('fault', 'a garbage or hostile state record shown on the terminal', 3, 3);
});

test('rum status and up --dry-run with libvirt unreachable: exit 4 and the hint, whatever the record says', async (t) => {
  const p = await builtVm(t);
  const gone = await fakeLibvirtd(t, 'drop-at-lookup');
  await p.editConfig((c) => (c.libvirt.uri = gone.uri));
  for (const args of [['status'], ['up', '--dry-run']]) {
    const r = await p.rum(...args);
    assert.equal(r.code, 4, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /hint: the libvirt daemon behind .* did not answer: start it/);
    assert.doesNotMatch(r.stdout, /not up to date|would change|not created yet/);
  }
  tally('fault', 'status and up --dry-run with the libvirt daemon going away', 2, 2);
});
