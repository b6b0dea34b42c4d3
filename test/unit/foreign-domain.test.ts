// A libvirt domain with this VM's name that rum did not make for this rum.yaml: `rum status` says
// it is there and whose it is (never "not created yet"), and `up` (dry or not) and `destroy`
// refuse it before doing anything: libvirt is only ever asked about it. A fake daemon holds the
// running domain (test/helpers/fake-libvirtd.ts).
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { RUM_XMLNS } from '../../src/libvirt/domain-xml.js';
import { fakeLibvirtd } from '../helpers/fake-libvirtd.js';
import { run, scratchProject } from '../helpers/rig.js';
import { tally } from '../helpers/tally.js';

// What virsh may ask of a daemon without changing anything: auth, features, open/close, lookup,
// XML, state, listing.
const READ_ONLY = new Set([66, 60, 1, 2, 23, 14, 212, 273]);

async function project(t: test.TestContext, xml?: string) {
  const daemon = await fakeLibvirtd(t, 'running', xml ? { xml } : {});
  const p = await scratchProject(t, { image: { base: 'base.qcow2' }, libvirt: { uri: daemon.uri }, network: { mode: 'user' } });
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(p.dir, 'base.qcow2'), '64M']);
  return { p, daemon };
}

test('status: a domain rum did not make is said to be there, running, and not this project\'s', async (t) => {
  const { p, daemon } = await project(t);
  const r = await p.rum('status');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^VM proj: not created: a libvirt domain named "proj" exists on \S+ and is not this project's \(it was not made by rum\); it is running, and `rum up` will not touch it$/m);
  assert.match(r.stdout, /hint +rum never changes a domain it does not own: set a different `name:` in rum\.yaml/);
  assert.doesNotMatch(r.stdout, /not created yet/);
  const j = await p.rumJson('status');
  assert.equal(j.state, 'foreign');
  assert.deepEqual([j.foreign.project, j.foreign.state], [null, 'running']);
  assert.ok(daemon.calls.every((c) => READ_ONLY.has(c)), `only questions: ${daemon.calls.join(',')}`);
});

test('status: another project\'s domain names that project, its path escaped', async (t) => {
  const other = '/home/x/\u001b[31mother\u202e/rum.yaml';
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const xml = `<domain type="kvm"><name>NAME</name><metadata><rum:vm xmlns:rum="${RUM_XMLNS}"><rum:config>${esc(other)}</rum:config><rum:dir>/x</rum:dir></rum:vm></metadata></domain>\n`;
  const { p } = await project(t, xml);
  const r = await p.rum('status');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /is not this project's \(it belongs to \/home\/x\/\\u001b\[31mother\\u202e\/rum\.yaml\)/);
  assert.doesNotMatch(r.stdout, /[\u001b\u202e]/);
});

test('up, up --dry-run and destroy refuse the domain before doing anything, and say why', async (t) => {
  const { p, daemon } = await project(t);
  for (const args of [['up', '--dry-run'], ['up'], ['destroy', '-y']]) {
    const r = await p.rum(...args);
    assert.equal(r.code, 4, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /error: a libvirt domain named "proj" exists on \S+ and is not this project's \(it was not made by rum\)/, args.join(' '));
    assert.match(r.stderr, /hint: rum never changes a domain it does not own/, args.join(' '));
  }
  await assert.rejects(access(p.vmFile('disk.qcow2')), 'up built nothing for a domain it could never define');
  assert.ok(daemon.calls.every((c) => READ_ONLY.has(c)), `only questions: ${daemon.calls.join(',')}`);
  tally('fault', 'a foreign domain of the same name under status, up and destroy', 4, 4);
});
