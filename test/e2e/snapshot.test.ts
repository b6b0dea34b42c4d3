// rum snapshot on a real guest, as a person runs it: an ordinary user on qemu:///system (the disk
// files stay theirs, QEMU reaches them by ACL, the whole chain named in the domain XML), with a
// virtiofs share. Saved while running and while off; restored after asking (a running guest is
// stopped); the graph restarts only the guest; a middle snapshot merged away; every layer sound
// by qemu-img check; --reset refuses to drop snapshots unasked and drops them when asked;
// destroy leaves nothing.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DOMAIN_PREFIX, SYSTEM_URI, TEST_USER, bootSkipReason, inNs, tail, userIds } from './env.js';
import { e2eProject } from './rum.js';

const asUser = (script: string) => inNs('sh', ['-c', script], { user: TEST_USER });

test(`snapshot as ${TEST_USER}: save running and off, restore after asking, rm merges, every layer sound, destroy leaves nothing`, async (t) => {
  const why = bootSkipReason({ session: true });
  if (why) return t.skip(why);
  const name = `${DOMAIN_PREFIX}snap`;
  const p = await e2eProject(
    t,
    {
      name,
      image: { base: 'debian-12' },
      resources: { cpus: 1, memory: '1G', disk: '3G' },
      libvirt: { uri: SYSTEM_URI },
      network: { mode: 'nat' },
      mounts: [{ source: './share', target: '/work', type: 'virtiofs' }],
    },
    { user: TEST_USER, home: true },
  );
  const { home } = userIds(TEST_USER);
  // The setup `rum doctor` names for QEMU's way into ~/.cache (a person does it once).
  await asUser(`mkdir '${join(p.dir, 'share')}' && setfacl -m u:libvirt-qemu:x '${join(home, '.cache')}'`);
  const up = await p.rum('up');
  assert.equal(up.code, 0, `${up.stderr}\n${tail(join(p.vmDir, 'console.log'))}`);
  const layers = () => readdir(join(p.vmDir, 'layers')).catch(() => [] as string[]);
  const sound = async (file: string) => {
    const r = await inNs('qemu-img', ['check', '-U', file], { reject: false });
    assert.equal(r.exitCode, 0, `qemu-img check ${file}: ${r.stdout}${r.stderr}`);
  };

  // Saved while running: the guest goes on, on a new layer, and nothing needs a restart.
  assert.equal((await p.exec('echo A > ~/a')).code, 0);
  const s1 = await p.rum('snapshot', 'save', 's1');
  assert.equal(s1.code, 0, s1.stderr);
  assert.match(s1.stderr, /saved snapshot s1 .*the guest runs on/);
  assert.equal((await p.exec('echo B > ~/b && cat ~/a')).stdout.trim(), 'A', 'the guest writes on after the save');
  const after = await p.rumJson('up', '--dry-run');
  assert.equal(after.changes, false, `a save changes nothing the graph builds: ${JSON.stringify(after.nodes.filter((n: any) => n.state !== 'fresh'))}`);
  const listed = await p.rumJson('snapshot', 'list');
  assert.deepEqual(listed.snapshots.map((s: any) => [s.name, s.current, s.parent]), [['s1', true, null]]);
  assert.ok(listed.snapshots[0].sizeBytes > 0);

  // Restore: refused off a terminal without -y, and nothing is touched; with -y the guest stops.
  const asked = await p.rum('snapshot', 'restore', 's1');
  assert.equal(asked.code, 2, asked.stderr);
  assert.match(asked.stderr, /stops the guest and loses what was written to its disk since that snapshot/);
  assert.match(asked.stderr, /pass -y/);
  assert.equal((await p.rumJson('status')).state, 'running');
  const restored = await p.rum('snapshot', 'restore', 's1', '-y');
  assert.equal(restored.code, 0, restored.stderr);
  assert.match(restored.stderr, /restored snapshot s1: `rum up` boots the guest from it/);
  const plan = await p.rumJson('up', '--dry-run');
  const stale = plan.nodes.filter((n: any) => n.state !== 'fresh');
  assert.deepEqual(stale.map((n: any) => n.id), ['running-domain', 'ssh-ready'], 'only the guest starts again');
  assert.match(stale[0].reasonText, /disk\.restored/);
  const graph = await p.rum('graph');
  assert.match(graph.stdout, /overlay \[stateful\] fresh \(on s1 ← base image; snapshots: s1\)/);
  const back = await p.rum('up');
  assert.equal(back.code, 0, `${back.stderr}\n${tail(join(p.vmDir, 'console.log'))}`);
  assert.equal((await p.exec('cat ~/a; test -e ~/b && echo B is there || echo B is gone')).stdout, 'A\nB is gone\n');
  await asUser(`echo from-host > '${join(p.dir, 'share', 'h')}'`);
  assert.equal((await p.exec('cat /work/h')).stdout.trim(), 'from-host', 'the virtiofs share works on the restored disk');

  // A second save while running, then one with the guest off; the middle one merged away.
  assert.equal((await p.exec('echo C > ~/c')).code, 0);
  assert.equal((await p.rum('snapshot', 'save', 's2')).code, 0);
  assert.equal((await p.rum('down')).code, 0);
  assert.equal((await p.exec('true')).code === 0, false, 'the guest is off');
  const s3 = await p.rum('snapshot', 'save', 's3');
  assert.equal(s3.code, 0, s3.stderr);
  assert.equal((await layers()).length, 3);
  const rm = await p.rum('snapshot', 'rm', 's2');
  assert.equal(rm.code, 0, rm.stderr);
  const after2 = await p.rumJson('snapshot', 'list');
  assert.deepEqual(after2.snapshots.map((s: any) => [s.name, s.parent, s.current]), [['s1', null, false], ['s3', 's1', true]]);
  assert.equal((await layers()).length, 2);
  for (const f of [join(p.vmDir, 'disk.qcow2'), ...(await layers()).map((l) => join(p.vmDir, 'layers', l))]) await sound(f);
  const st = await p.rumJson('status');
  assert.deepEqual(st.disk.on, ['s3', 's1']);

  // --reset would drop them: refused unless asked.
  const reset = await p.rum('up', '--reset', '-y');
  assert.equal(reset.code, 2, reset.stderr);
  assert.match(reset.stderr, /would drop its snapshots \(s1, s3\)/);
  assert.match(reset.stderr, /--drop-snapshots/);
  assert.equal((await layers()).length, 2, 'nothing was changed');

  // The merged chain boots (its domain XML names s3 then s1 then the base image), with C there.
  const again = await p.rum('up');
  assert.equal(again.code, 0, `${again.stderr}\n${tail(join(p.vmDir, 'console.log'))}`);
  assert.equal((await p.exec('cat ~/a ~/c')).stdout, 'A\nC\n');
  const rmLive = await p.rum('snapshot', 'rm', 's3');
  assert.equal(rmLive.code, 7, rmLive.stderr);
  assert.match(rmLive.stderr, /the running guest reads snapshot s3's layer/);

  // Asked for: a fresh first-boot disk, and the snapshots go with the old one.
  const fresh = await p.rum('up', '--reset', '--drop-snapshots', '-y');
  assert.equal(fresh.code, 0, `${fresh.stderr}\n${tail(join(p.vmDir, 'console.log'))}`);
  assert.equal((await p.exec('test -e ~/a && echo kept || echo fresh')).stdout.trim(), 'fresh');
  assert.deepEqual(await layers(), []);
  assert.deepEqual((await p.rumJson('snapshot', 'list')).snapshots, []);
  await sound(join(p.vmDir, 'disk.qcow2'));

  const gone = await p.rum('destroy', '-y');
  assert.equal(gone.code, 0, gone.stderr);
  assert.deepEqual(await readdir(p.vmDir).catch(() => 'gone'), 'gone', 'destroy removes the disk and every layer');
});
