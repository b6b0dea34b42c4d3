// A libvirt that cannot be asked is said (exit 4, with the hint to start it), never taken for an
// answer. virsh words every failed lookup alike ("failed to get domain 'x'"), so a daemon going
// away under the question once read as "no such domain": defined-domain and everything after it
// became stale, and `status`/`up --dry-run` reported changes that were not there. Fake daemons
// (test/helpers/fake-libvirtd.ts) that are absent, close at once, drop the lookup, or fail it
// and then vanish; and, as the control, one that answers that there is no such domain.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import type { Config } from '../../src/config/schema.js';
import { exitCodes } from '../../src/errors.js';
import { DigestCache, digestOf, initDigests } from '../../src/graph/digest.js';
import { execute } from '../../src/graph/execute.js';
import { fingerprintNow, makePlan, type Engine } from '../../src/graph/plan.js';
import { defineRule, type AnyRule } from '../../src/graph/rule.js';
import { StateStore } from '../../src/graph/state.js';
import { Virsh, VirshError } from '../../src/libvirt/virsh.js';
import { VmDir } from '../../src/paths.js';
import { Machine } from '../../src/machine/machine.js';
import { instantiate } from '../../src/graph/nodes.js';
import type { RumCtx } from '../../tasks/context.js';
import { definedDomain } from '../../tasks/defined-domain.js';
import { runningDomain } from '../../tasks/running-domain.js';
import { fakeLibvirtd, type FakeMode } from '../helpers/fake-libvirtd.js';

before(() => initDigests());

const UNREACHABLE: FakeMode[] = ['absent', 'close-at-once', 'drop-at-lookup', 'lookup-error'];

function isUnreachable(what: string) {
  return (err: unknown) => {
    assert.ok(err instanceof VirshError, `${what}: ${String(err)}`);
    assert.equal(err.kind, 'no-daemon', `${what}: ${err.message}`);
    assert.equal(exitCodes[err.code], 4, what);
    assert.match(err.hint ?? '', /start it .*libvirtd/, what);
    return true;
  };
}

test('virsh: a daemon that is not there, closes, or goes away under a lookup is an error, never "no such domain"', async (t) => {
  for (const mode of UNREACHABLE) {
    const v = new Virsh((await fakeLibvirtd(t, mode)).uri);
    await assert.rejects(v.domainSnapshot('rum-x'), isUnreachable(`${mode}: domainSnapshot`));
    await assert.rejects(v.domainState('rum-x'), isUnreachable(`${mode}: domainState`));
    await assert.rejects(v.dumpxml('rum-x', { inactive: true }), isUnreachable(`${mode}: dumpxml`));
    // destroy (rum destroy) would otherwise take "absent" and delete the VM's disk.
    await assert.rejects(v.destroy('rum-x'), isUnreachable(`${mode}: destroy`));
  }
});

test('virsh: a daemon that has no such domain gives absent values, confirmed by its listing', async (t) => {
  const f = await fakeLibvirtd(t, 'no-domains');
  const v = new Virsh(f.uri);
  assert.deepEqual(await v.domainSnapshot('rum-x'), { state: undefined, inactiveXml: undefined });
  assert.equal(await v.domainState('rum-x'), undefined);
  assert.equal(await v.destroy('rum-x'), 'absent');
  assert.ok(f.calls.includes(273), 'connectListAllDomains was asked');
});

/** A VM as rum leaves it running: every key current, so a plan asks libvirt about the domain. */
async function definedVm(t: test.TestContext, uri: string): Promise<Engine<RumCtx> & { ctx: RumCtx }> {
  const dir = await mkdtemp(join(tmpdir(), 'rum-unreachable-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const config = { name: 'rum-unreachable', file: join(dir, 'rum.yaml'), libvirt: { uri }, resources: { disk: 2 ** 30 } } as unknown as Config;
  const vm = new VmDir('rum-unreachable', { XDG_DATA_HOME: dir });
  const machine = new Machine({ ...config, machine: 'rum-unreachable', after: [] }, vm);
  const ctx = { machine, config, vm, env: process.env, generation: 1 } as unknown as RumCtx;
  // The file nodes before them, as stand-ins: what matters here is what libvirt is asked.
  const file = (id: string) =>
    defineRule<RumCtx, Record<string, never>>({ id, kind: 'derived', version: 1, deps: [], inputs: () => ({}), build: async () => ({ digest: digestOf(id) }) });
  const rules: AnyRule<RumCtx>[] = [file('domain-xml'), file('overlay'), file('seed-iso'), file('project-network'), definedDomain, runningDomain];
  const state = await StateStore.open(undefined);
  const e: Engine<RumCtx> = { nodes: instantiate(rules, [{ name: 'vm', ctx, state }], { qualify: false }), digests: await DigestCache.open(undefined), opts: {} };
  for (const n of e.nodes) {
    const fp = await fingerprintNow(e, n, await n.rule.inputs(ctx));
    assert.ok(typeof fp !== 'string');
    await state.record(n.id, { key: fp.key, fields: fp.fields, output: digestOf(n.id), time: new Date().toISOString() });
  }
  return Object.assign(e, { ctx });
}

test('a defined VM\'s plan with libvirt unreachable: an error with the hint, never stale nodes', async (t) => {
  for (const mode of UNREACHABLE) {
    for (const early of [false, true]) {
      const e = await definedVm(t, (await fakeLibvirtd(t, mode)).uri);
      // As engineFor does: the question is asked before the plan, its failure left for the plan.
      if (early) e.ctx.machine.domainFacts().catch(() => undefined);
      await assert.rejects(makePlan(e), isUnreachable(`${mode}${early ? ', asked early' : ''}`));
    }
  }
});

test('a run (up) that meets libvirt unreachable fails at that node and builds nothing after it', async (t) => {
  const e = await definedVm(t, (await fakeLibvirtd(t, 'lookup-error')).uri);
  // A plan from a moment when libvirt answered, with the domain nodes to be looked at again (as
  // after an upstream rebuild): the run asks, and must not take the silence for "define it".
  const plan = await makePlan({ ...e, nodes: e.nodes.slice(0, 4) });
  const all = { nodes: [...plan.nodes], edges: plan.edges };
  for (const id of ['defined-domain', 'running-domain']) {
    const node = e.nodes.find((n) => n.id === id)!;
    const deps = [...node.deps.values(), ...node.after];
    all.nodes.push({ id, rule: node.rule as AnyRule<unknown>, machine: 'vm', node: node as never, deps, state: 'stale', action: 'redefine' });
    all.edges.push(...deps.map((d): [string, string] => [d, id]));
  }
  const result = await execute(e, all);
  assert.equal(result.failure?.node, 'defined-domain');
  assert.ok(isUnreachable('execute')(result.failure?.error));
  assert.equal(result.outcomes.get('running-domain')?.type, 'skipped');
});

test('control: a daemon that has no such domain makes the same plan stale, saying why', async (t) => {
  const e = await definedVm(t, (await fakeLibvirtd(t, 'no-domains')).uri);
  const by = Object.fromEntries((await makePlan(e)).nodes.map((n) => [n.id, n]));
  assert.equal(by['domain-xml']!.state, 'fresh');
  assert.deepEqual(by['defined-domain']!.reason, { type: 'check-failed', why: 'libvirt has no domain rum-unreachable' });
  assert.equal(by['defined-domain']!.action, 'redefine');
  assert.equal(by['running-domain']!.state, 'stale');
});
