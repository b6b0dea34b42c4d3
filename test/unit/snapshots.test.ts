// The snapshot layers on real qcow2 files (qemu-img, qemu-io), with the guest off: what a save
// freezes, what a restore gives back, a middle layer merged away without breaking the chain,
// and what a killed operation leaves settled by the next one. Every image passes qemu-img check.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { linkSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { chainOf, checkSnapshotName, layerPath, readSnapshots, Snapshots, type DiskHost } from '../../src/machine/snapshots.js';
import { VmDir } from '../../src/paths.js';

const MiB = 1024 * 1024;

function vmFor(t: TestContext): { vm: VmDir; base: string; snaps: Snapshots } {
  const root = mkdtempSync(join(tmpdir(), 'rum-snap-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const vm = new VmDir('snapvm', { XDG_DATA_HOME: root } as NodeJS.ProcessEnv);
  mkdirSync(vm.dir, { recursive: true });
  const base = join(root, 'base.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '16M']);
  io(base, 'write -P 0x11 0 1M'); // the base image's own bytes
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, vm.path('overlay'), '16M']);
  const host: DiskHost = {
    vm,
    live: async () => false,
    suspended: async () => false,
    liveTop: async () => undefined,
    moveTop: async () => assert.fail('the guest is off: nothing goes through libvirt'),
    grant: async () => {},
  };
  return { vm, base, snaps: new Snapshots(host) };
}

const io = (file: string, cmd: string) => execFileSync('qemu-io', ['-f', 'qcow2', '-c', cmd, file], { encoding: 'utf8' });
/** Whether the disk reads `pattern` at `offset` (qemu-io read -P fails on a mismatch). */
function reads(file: string, offset: number, pattern: number): boolean {
  try {
    return !/Pattern verification failed/.test(io(file, `read -P 0x${pattern.toString(16)} ${offset} 64k`));
  } catch {
    return false;
  }
}
function backing(file: string): string | undefined {
  return (JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', file], { encoding: 'utf8' })) as { 'backing-filename'?: string })['backing-filename'];
}
function sound(file: string): void {
  execFileSync('qemu-img', ['check', '-U', '-q', file]); // throws on any corruption
}

test('save freezes the disk as a read-only layer; restore gives it back; the chain stays sound', async (t) => {
  const { vm, base, snaps } = vmFor(t);
  const disk = vm.path('overlay');
  io(disk, 'write -P 0xaa 1M 64k'); // A
  const s1 = await snaps.save('s1');
  const l1 = layerPath(vm, s1.id);
  assert.equal(backing(disk), l1, 'the disk goes on above the new layer');
  assert.equal(backing(l1), base);
  assert.equal(statSync(l1).mode & 0o777, 0o444);
  io(disk, 'write -P 0xbb 2M 64k'); // B
  const s2 = await snaps.save('s2');
  assert.deepEqual(chainOf(await readSnapshots(vm), vm), [layerPath(vm, s2.id), l1]);
  io(disk, 'write -P 0xcc 3M 64k'); // C, after every snapshot

  await snaps.restore('s1');
  assert.ok(reads(disk, 1 * MiB, 0xaa), 'A is there');
  assert.ok(!reads(disk, 2 * MiB, 0xbb), 'B is not');
  assert.ok(!reads(disk, 3 * MiB, 0xcc), 'C is not');
  assert.ok(reads(disk, 0, 0x11), 'the base image shows through');
  const rec = await readSnapshots(vm);
  assert.equal(rec.disk.on, s1.id);
  assert.match(rec.disk.restored ?? '', new RegExp(`^${s1.id}@\\d+$`), 'a restore is a new identity for the running domain');
  await snaps.restore('s2');
  assert.ok(reads(disk, 2 * MiB, 0xbb), 's2 still has B: restoring s1 kept the later snapshot');
  for (const f of [disk, l1, layerPath(vm, s2.id)]) sound(f);
  assert.deepEqual(readdirSync(vm.dir).filter((f) => f.includes('.next-')), [], 'no new top is left behind');
  rmSync(disk); // deleted behind rum's back: a snapshot brings the disk back
  await snaps.restore('s1');
  assert.ok(reads(disk, 1 * MiB, 0xaa));
  sound(disk);
});

test('rm of a middle layer merges it into each layer and disk above it: no chain breaks, nothing changes', async (t) => {
  const { vm, base, snaps } = vmFor(t);
  const disk = vm.path('overlay');
  io(disk, 'write -P 0xaa 1M 64k');
  const s1 = await snaps.save('s1');
  io(disk, 'write -P 0xbb 2M 64k');
  const s2 = await snaps.save('s2');
  await snaps.restore('s1'); // the disk sits on s1 too: two children
  io(disk, 'write -P 0xdd 4M 64k');
  await snaps.remove('s1');
  const l2 = layerPath(vm, s2.id);
  assert.equal(backing(l2), base, 's2 now sits on the base image');
  assert.equal(backing(disk), base, 'so does the disk');
  assert.throws(() => statSync(layerPath(vm, s1.id)), /ENOENT/);
  assert.ok(reads(disk, 1 * MiB, 0xaa) && reads(disk, 4 * MiB, 0xdd), 'the disk reads as before');
  assert.ok(reads(l2, 1 * MiB, 0xaa) && reads(l2, 2 * MiB, 0xbb), 's2 reads as before');
  assert.equal(statSync(l2).mode & 0o777, 0o444, 'and stays read-only');
  const rec = await readSnapshots(vm);
  assert.deepEqual(rec.snapshots.map((s) => [s.name, s.parent]), [['s2', null]]);
  assert.equal(rec.disk.on, null);
  for (const f of [disk, l2]) sound(f);
  await snaps.remove('s2'); // a leaf: simply deleted
  assert.deepEqual(readdirSync(vm.path('layers')), []);
});

test('names are checked; a name is used once; an unknown one lists those there are', async (t) => {
  const { snaps } = vmFor(t);
  for (const bad of ['', '-x', 'a b', 'a/b', '../x', 'x'.repeat(65), 'é']) assert.throws(() => checkSnapshotName(bad), /is not a snapshot name/);
  await snaps.save('ok.1_a-b');
  await assert.rejects(snaps.save('ok.1_a-b'), /exists already/);
  await assert.rejects(snaps.restore('nope'), (e: Error & { hint?: string }) => /no snapshot named nope/.test(e.message) && /ok\.1_a-b/.test(e.hint ?? ''));
});

test('a save killed before its commit point is undone; one killed after it is finished', async (t) => {
  const { vm, snaps } = vmFor(t);
  const disk = vm.path('overlay');
  io(disk, 'write -P 0xaa 1M 64k');
  // Killed after the layer link, before the rename: the "layer" is still the live disk.
  mkdirSync(vm.path('layers'));
  const tmp = `${disk}.next-aaaaaaaaaaaa`;
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', layerPath(vm, 'aaaaaaaaaaaa'), '-u', tmp, '16M']);
  linkSync(disk, layerPath(vm, 'aaaaaaaaaaaa'));
  writeFileSync(vm.path('snapshots'), JSON.stringify({ snapshots: [], disk: { on: null }, pending: { op: 'save', name: 'x', id: 'aaaaaaaaaaaa', tmp } }));
  const undone = await snaps.list();
  assert.deepEqual(undone.snapshots, []);
  assert.equal(undone.pending, undefined);
  assert.deepEqual(readdirSync(vm.path('layers')), [], 'the second name of the disk is gone');
  assert.throws(() => statSync(tmp), /ENOENT/);
  assert.ok(reads(disk, 1 * MiB, 0xaa), 'the disk is untouched');

  // Killed after the rename, before the record: the disk sits on the new layer already.
  const tmp2 = `${disk}.next-bbbbbbbbbbbb`;
  const l2 = layerPath(vm, 'bbbbbbbbbbbb');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', l2, '-u', tmp2, '16M']);
  linkSync(disk, l2);
  execFileSync('mv', [tmp2, disk]);
  writeFileSync(vm.path('snapshots'), JSON.stringify({ snapshots: [], disk: { on: null }, pending: { op: 'save', name: 'y', id: 'bbbbbbbbbbbb', tmp: tmp2 } }));
  const done = await snaps.list();
  assert.deepEqual(done.snapshots.map((s) => s.name), ['y']);
  assert.equal(done.disk.on, 'bbbbbbbbbbbb');
  assert.equal(backing(disk), l2);
  sound(disk);
});

test('a running save killed inside libvirt, the guest since stopped: the top it wrote to is kept and takes the disk\'s name', async (t) => {
  const { vm, snaps } = vmFor(t);
  const disk = vm.path('overlay');
  io(disk, 'write -P 0xaa 1M 64k');
  mkdirSync(vm.path('layers'));
  const id = 'dddddddddddd';
  const tmp = `${disk}.next-${id}`;
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', layerPath(vm, id), '-u', tmp, '16M']);
  linkSync(disk, layerPath(vm, id));
  io(tmp, 'write -P 0xee 2M 64k'); // QEMU moved onto it and the guest wrote; libvirt no longer names it
  writeFileSync(vm.path('snapshots'), JSON.stringify({ snapshots: [], disk: { on: null }, pending: { op: 'save', name: 'x', id, tmp } }));
  const rec = await snaps.list();
  assert.deepEqual(rec.snapshots.map((s) => s.name), ['x']);
  assert.ok(reads(disk, 2 * MiB, 0xee) && reads(disk, 1 * MiB, 0xaa), "the guest's writes after the move are the disk's");
  sound(disk);
});

test('a restore killed before its new top existed is not taken for done, even on the layer the disk already sits on', async (t) => {
  const { vm, snaps } = vmFor(t);
  const disk = vm.path('overlay');
  const s1 = await snaps.save('s1');
  io(disk, 'write -P 0xbb 2M 64k'); // written since s1: a restore would lose it
  const rec = await readSnapshots(vm);
  writeFileSync(vm.path('snapshots'), JSON.stringify({ ...rec, pending: { op: 'restore', name: 's1', id: s1.id, tmp: `${disk}.next-eeeeeeeeeeee`, topIno: statSync(disk).ino } }));
  const after = await snaps.list();
  assert.equal(after.disk.restored, undefined, 'no restore is recorded');
  assert.ok(reads(disk, 2 * MiB, 0xbb));
});

test('an operation naming a file outside the VM directory is refused, never acted on', async (t) => {
  const { vm, snaps } = vmFor(t);
  const victim = join(vm.dir, '..', 'disk.qcow2.next-ffffffffffff');
  writeFileSync(victim, 'not rum\'s');
  writeFileSync(vm.path('snapshots'), JSON.stringify({ snapshots: [], disk: { on: null }, pending: { op: 'save', name: 'x', id: 'ffffffffffff', tmp: victim } }));
  await assert.rejects(snaps.list(), /names a file outside/);
  assert.ok(statSync(victim).isFile());
  writeFileSync(vm.path('snapshots'), JSON.stringify({ snapshots: [], disk: { on: null }, pending: { op: 'save', name: 'x', id: 'ffffffffffff', tmp: '/etc/passwd' } }));
  await assert.rejects(readSnapshots(vm), /is damaged/);
});

test('a stray layer is removed, unless the disk still reads from it', async (t) => {
  const { vm, snaps } = vmFor(t);
  const s1 = await snaps.save('s1');
  mkdirSync(vm.path('layers'), { recursive: true });
  const stray = layerPath(vm, 'cccccccccccc');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', stray, '1M']);
  // A damaged record that forgot s1: its layer is still under the disk, so it must stay.
  writeFileSync(vm.path('snapshots'), JSON.stringify({ snapshots: [], disk: { on: null } }));
  await snaps.list();
  assert.throws(() => statSync(stray), /ENOENT/);
  assert.ok(statSync(layerPath(vm, s1.id)).isFile(), 'the layer the disk sits on is never deleted');
  sound(vm.path('overlay'));
});

test('dropAll (up --reset --drop-snapshots): the record goes first, the layers once the new disk stands', async (t) => {
  const { vm, base, snaps } = vmFor(t);
  await snaps.save('s1');
  let seen: string[] | undefined;
  await snaps.dropAll(async () => {
    seen = readdirSync(vm.path('layers'));
    assert.deepEqual((await readSnapshots(vm)).snapshots, [], 'no snapshot is named while the new disk is made');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, vm.path('overlay'), '16M']);
  });
  assert.equal(seen?.length, 1, 'the old disk could still read its layer until the new one stood');
  assert.throws(() => statSync(vm.path('layers')), /ENOENT/);
  assert.equal(backing(vm.path('overlay')), base);
});

test('a damaged record is refused with where to look, never guessed at', async (t) => {
  const { vm } = vmFor(t);
  writeFileSync(vm.path('snapshots'), '{"snapshots": [{"name": "../x", "id": "zz", "created": "", "parent": null}], "disk": {"on": null}}');
  await assert.rejects(readSnapshots(vm), (e: Error & { hint?: string }) => /is damaged/.test(e.message) && /qemu-img info --backing-chain/.test(e.hint ?? ''));
});
