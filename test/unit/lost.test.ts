// A stateful artifact deleted behind rum's back (the VM's disk, its SSH keys) is said plainly and
// never made again without --reset: an empty disk under the same instance-id would be a guest
// whose data is gone and whose first boot never runs again.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { run, scratchProject } from '../helpers/rig.js';
import { tally } from '../helpers/tally.js';

async function project(t: import('node:test').TestContext) {
  const p = await scratchProject(t, { image: { base: 'base.qcow2' } });
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(p.dir, 'base.qcow2'), '64M']);
  return p;
}

test('a vanished disk stops the run with what is gone and how to go on; nothing is recreated', async (t) => {
  const p = await project(t);
  const first = await p.rum('build', 'overlay');
  assert.equal(first.code, 0, first.stderr);
  await rm(p.vmFile('disk.qcow2'));

  const again = await p.rum('build', 'overlay');
  assert.equal(again.code, 7, again.stderr);
  assert.match(again.stderr, /the VM's disk .*disk\.qcow2 is gone/);
  assert.match(again.stderr, /rum up --reset/);
  assert.doesNotMatch(again.stderr, /at .*\.js:\d+/, 'no stack trace');
  await assert.rejects(stat(p.vmFile('disk.qcow2')), 'no empty disk made in its place');

  const plan = await p.rumJson('graph'); // the plan without asking libvirt, which unit tests may not have
  const overlay = plan.nodes.find((n: { id: string }) => n.id === 'overlay');
  assert.equal(overlay.action, 'kept-needs-reset');
  assert.equal(overlay.reason.type, 'lost');
  tally('fault', 'the VM disk deleted behind rum', 1, 1);
});

test('vanished SSH keys are not silently replaced by keys the guest would not trust', async (t) => {
  const p = await project(t);
  assert.equal((await p.rum('build', 'ssh-keys')).code, 0);
  await rm(p.vmFile('id_ed25519.pub'));
  const again = await p.rum('build', 'ssh-keys');
  assert.equal(again.code, 7, again.stderr);
  assert.match(again.stderr, /SSH key .*id_ed25519\.pub is gone/);
  await assert.rejects(stat(p.vmFile('id_ed25519.pub')));
  tally('fault', 'the VM SSH key deleted behind rum', 1, 1);
});
