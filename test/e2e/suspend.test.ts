// rum suspend for real: a guest's memory saved and restored by `rum up`: a process started before
// is still there, the clock is right, a 9p share works again; a changed definition discards the
// saved memory only after saying so; virtiofs shares refuse the suspend before anything is touched.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DOMAIN_PREFIX, bootSkipReason, scratchDir, sleep, tail } from './env.js';
import { e2eProject } from './rum.js';

test('suspend: up resumes the same guest (process, file, clock, 9p share); a changed definition boots afresh after saying so', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const share = join(await scratchDir(t), 'share');
  await mkdir(share);
  await writeFile(join(share, 'from-host'), 'host file\n');
  const p = await e2eProject(t, {
    name: `${DOMAIN_PREFIX}suspend`,
    image: { base: 'debian-12' },
    resources: { cpus: 1, memory: '512M', disk: '3G' },
    network: { mode: 'user' },
    mounts: [{ source: share, target: '/mnt/share', type: '9p' }],
  });
  const up = await p.rum('up');
  assert.equal(up.code, 0, `${up.stderr}\n${tail(join(p.vmDir, 'console.log'))}`);
  assert.equal((await p.exec('echo kept > ~/note')).code, 0);
  const started = await p.exec('nohup sleep 100000 >/dev/null 2>&1 & echo $!');
  const pid = started.stdout.trim();
  assert.match(pid, /^\d+$/);

  const sus = await p.rum('suspend');
  assert.equal(sus.code, 0, sus.stderr);
  assert.match(sus.stderr, /suspended: `rum up` resumes it/);
  assert.equal((await p.rumJson('status')).state, 'suspended');
  const plan = await p.rumJson('up', '--dry-run');
  const running = plan.nodes.find((n: { id: string }) => n.id === 'running-domain');
  assert.equal(running.action, 'resume', JSON.stringify(running));
  // Time passes while it is saved: its clock stops, and must be right again after the resume.
  await sleep(15_000);

  const back = await p.rum('up');
  assert.equal(back.code, 0, back.stderr);
  assert.match(back.stderr, /running-domain: resume/);
  assert.equal((await p.exec(`kill -0 ${pid} && echo alive`)).stdout.trim(), 'alive');
  assert.equal((await p.exec('cat ~/note')).stdout.trim(), 'kept');
  const before = Date.now() / 1000;
  const clock = Number((await p.exec('date +%s.%N')).stdout.trim());
  const after = Date.now() / 1000;
  assert.ok(clock >= before - 2 && clock <= after + 2, `guest clock ${clock}, host ${before}..${after}`);
  assert.equal((await p.exec('cat /mnt/share/from-host')).stdout.trim(), 'host file');

  // A definition changed while suspended: the plan says the memory goes; up without -y off a
  // terminal refuses; with -y the guest boots afresh (the process is gone, the disk kept: even
  // what was written just before the suspend, still only in the guest's page cache then).
  assert.equal((await p.exec('echo late > ~/late')).code, 0);
  const sus2 = await p.rum('suspend');
  assert.equal(sus2.code, 0, sus2.stderr);
  await p.editConfig((c) => {
    c.resources.memory = '640M';
  });
  const dry = await p.rum('up', '--dry-run');
  assert.match(dry.stdout, /saved memory would be discarded/);
  const refused = await p.rum('up');
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /pass -y/);
  assert.equal((await p.rumJson('status')).state, 'suspended');
  const fresh = await p.rum('up', '-y');
  assert.equal(fresh.code, 0, fresh.stderr);
  assert.match(fresh.stderr, /saved memory is discarded/);
  assert.notEqual((await p.exec(`kill -0 ${pid} 2>/dev/null && echo alive || echo gone`)).stdout.trim(), 'alive');
  assert.equal((await p.exec('cat ~/note ~/late')).stdout.trim(), 'kept\nlate');
  assert.equal((await p.exec('cat /mnt/share/from-host')).stdout.trim(), 'host file');

  // A snapshot of the running guest (as root: QEMU as root, no ACLs; a 9p share) moves its disk
  // under it; libvirt's view of the running guest then names a file that is gone, so a suspend,
  // whose saved memory libvirt would restore onto that view, is refused before anything is touched.
  const snap = await p.rum('snapshot', 'save', 's0');
  assert.equal(snap.code, 0, snap.stderr);
  assert.equal((await p.exec('echo after > ~/after && cat ~/note')).stdout.trim(), 'kept');
  const refusedAfterSnap = await p.rum('suspend');
  assert.equal(refusedAfterSnap.code, 7, refusedAfterSnap.stderr);
  assert.match(refusedAfterSnap.stderr, /a snapshot moved its disk while it ran/);
  assert.equal((await p.rumJson('status')).state, 'running');
});

test('suspend: virtiofs shares refuse it, naming them, before anything is touched', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const share = join(await scratchDir(t), 'share');
  await mkdir(share);
  const p = await e2eProject(t, {
    name: `${DOMAIN_PREFIX}suspend-vfs`,
    image: { base: 'debian-12' },
    network: { mode: 'user' },
    mounts: [{ source: share, target: '/srv/code', type: 'virtiofs' }],
  });
  const r = await p.rum('suspend');
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /virtiofs shares \(\/srv\/code\)/);
  assert.match(r.stderr, /type: 9p/);
});
