// rum as a person runs it: installed from the packed tarball (test/e2e/env.ts rumBin), started
// by an unprivileged user, with the project in that user's home and rum's VM and image cache
// where a user's rum keeps them (~/.local/share/rum, ~/.cache/rum). Once on qemu:///system,
// reached as a member of the group that owns libvirtd's socket (NAT, a writable share and a
// read-only one), once on qemu:///session (user networking, 9p). In each: up, exec, files both
// ways with the user's ownership, down, up again, destroy; nothing of root's left in the home,
// nothing of the user's left outside it.
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DOMAIN_PREFIX, SESSION_URI, SYSTEM_URI, TEST_USER, bootSkipReason, inNs, tail, userIds, virsh } from './env.js';
import { e2eProject, type E2eProject } from './rum.js';

const ids = () => userIds(TEST_USER);

/** A shell command run on the host as the test user (a person editing their files). */
const asUser = (script: string) => inNs('sh', ['-c', script], { user: TEST_USER });

/** Paths under `dirs` owned (`not`: not owned) by `uid`, as `find` sees them. */
async function ownedBy(uid: number, dirs: string[], not = false): Promise<string[]> {
  const r = await inNs('find', [...dirs, '-xdev', ...(not ? ['!'] : []), '-uid', String(uid)], { reject: false });
  return String(r.stdout).split('\n').filter(Boolean);
}

async function upDownUpDestroy(p: E2eProject, o: { name: string; share: string; session: boolean }) {
  const { uid, gid, home } = ids();
  const up = await p.rumJson('up');
  assert.equal(up.ok, true, `${JSON.stringify(up)}\n${tail(join(p.vmDir, 'console.log'))}`);
  assert.equal((await p.exec('id -u')).stdout.trim(), String(uid), "the guest user has the host user's uid");

  // Guest to host: the user's file. Host to guest: an edit made by the user appears.
  assert.equal((await p.exec('echo from-guest > /work/g.txt')).code, 0);
  const st = await stat(join(o.share, 'g.txt'));
  assert.deepEqual([st.uid, st.gid], [uid, gid], 'a file the guest wrote belongs to the user on the host');
  assert.equal(await readFile(join(o.share, 'g.txt'), 'utf8'), 'from-guest\n');
  await asUser(`echo edited-on-host > '${join(o.share, 'h.txt')}'`);
  assert.equal((await p.exec('cat /work/h.txt')).stdout, 'edited-on-host\n');

  // Every file in the home is the user's, even while the guest runs: nothing of root's, and
  // nothing handed to libvirt's QEMU user (it reaches the disk files by an ACL).
  assert.deepEqual(await ownedBy(uid, [home], true), [], "everything in the user's home is the user's");

  assert.equal((await p.exec('echo kept > ~/on-disk.txt')).code, 0);
  const down = await p.rum('down');
  assert.equal(down.code, 0, down.stderr);
  const again = await p.rumJson('up');
  assert.equal(again.ok, true, `${JSON.stringify(again)}\n${tail(join(p.vmDir, 'console.log'))}`);
  assert.equal((await p.exec('cat ~/on-disk.txt /work/g.txt')).stdout, 'kept\nfrom-guest\n', 'the disk and the share after down/up');

  const destroy = await p.rum('destroy', '-y');
  assert.equal(destroy.code, 0, destroy.stderr);
  assert.equal(await stat(p.vmDir).then(() => true, () => false), false, 'destroy removes the VM directory');
  const listed = await virsh(['list', '--all', '--name'], { session: o.session });
  assert.doesNotMatch(listed, new RegExp(`^${o.name}$`, 'm'), 'no domain left');
  assert.deepEqual(await ownedBy(uid, [home], true), [], "everything in the user's home is still the user's after down, up and destroy");
  const outside = ['/tmp', '/var/tmp', '/dev/shm', '/var/lib/libvirt', '/run/libvirt'];
  assert.deepEqual(await ownedBy(uid, outside), [], "nothing of the user's left outside the home");
}

test(`as ${TEST_USER}, installed: qemu:///system through the socket's group, NAT, a writable and a read-only share`, async (t) => {
  const why = bootSkipReason({ session: true });
  if (why) return t.skip(why);
  const p = await e2eProject(
    t,
    {
      name: `${DOMAIN_PREFIX}user-system`,
      image: { base: 'debian-12' },
      resources: { cpus: 1, memory: '1G', disk: '3G' },
      libvirt: { uri: SYSTEM_URI },
      network: { mode: 'nat' },
      mounts: [
        { source: './share', target: '/work' },
        { source: './docs', target: '/docs', readonly: true },
      ],
    },
    { user: TEST_USER, home: true },
  );
  await asUser(`mkdir '${join(p.dir, 'share')}' '${join(p.dir, 'docs')}' && echo read-me > '${join(p.dir, 'docs', 'r.txt')}'`);

  // As a person would: ask rum doctor, and run the fix it names for QEMU's way into ~/.cache
  // (libvirt's session daemon made it 0700 when env.sh first ran it for this user; a fix an
  // earlier run applied is taken back first, so the check is seen failing).
  await asUser(`setfacl -x u:libvirt-qemu '${join(ids().home, '.cache')}' 2>/dev/null; chmod 0700 '${join(ids().home, '.cache')}'`);
  let doctor = await p.rumJson('doctor');
  const check = (id: string) => doctor.checks.find((c: any) => c.id === id);
  assert.equal(check('kvm').status, 'warn', 'TCG here: KVM is not usable');
  assert.match(check('kvm').summary, /TCG/);
  assert.equal(check('libvirt').status, 'ok', check('libvirt').summary);
  assert.equal(check('group').status, 'ok', check('group').summary);
  assert.match(check('group').summary, /in group libvirt, in this session too/);
  assert.notEqual(check('network').status, 'fail', check('network').summary);
  assert.equal(check('home-access').status, 'fail', check('home-access').summary);
  assert.match(check('home-access').summary, new RegExp(`cannot pass through ${ids().home}/\\.cache \\(mode 0700`));
  const fix = /^`([^`]+)`/.exec(check('home-access').fix)?.[1];
  assert.equal(fix, `setfacl -m u:libvirt-qemu:x ${ids().home}/.cache`, check('home-access').fix);
  await asUser(fix!);
  doctor = await p.rumJson('doctor');
  assert.equal(check('home-access').status, 'ok', check('home-access').summary);
  assert.equal(doctor.ok, true);

  const st = await p.rumJson('status');
  assert.deepEqual(
    st.mounts.map((m: any) => [m.target, m.type, m.readonly]),
    [['/work', 'virtiofs', false], ['/docs', '9p', true]],
  );
  assert.match(st.dir, new RegExp(`^${ids().home}/\\.local/share/rum/`), "the VM lives in the user's data directory");

  const upFirst = await p.rumJson('up');
  assert.equal(upFirst.ok, true, `${JSON.stringify(upFirst)}\n${tail(join(p.vmDir, 'console.log'))}`);
  assert.match((await p.exec("ip -4 -o addr show scope global | awk '{print $4}'")).stdout, /^192\.168\.122\.\d+\/24/m, 'NAT address');
  // rum list, from anywhere: this VM, running, at its NAT address.
  const list = await p.rumJson('list');
  const mine = list.vms.find((v: any) => v.vm === `${DOMAIN_PREFIX}user-system`);
  assert.equal(mine?.state, 'running', JSON.stringify(list));
  assert.match(mine.ssh.host, /^192\.168\.122\.\d+$/);
  assert.ok(mine.diskBytes > 0);
  // The read-only share: readable, and refused by the host on write.
  assert.equal((await p.exec('cat /docs/r.txt')).stdout, 'read-me\n');
  const refused = await p.exec('echo nope > /docs/w.txt');
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /Read-only file system/);
  await upDownUpDestroy(p, { name: `${DOMAIN_PREFIX}user-system`, share: join(p.dir, 'share'), session: false });
});

test(`as ${TEST_USER}, installed: qemu:///session, user networking, a 9p share`, async (t) => {
  const why = bootSkipReason({ session: true });
  if (why) return t.skip(why);
  const p = await e2eProject(
    t,
    {
      name: `${DOMAIN_PREFIX}user-session`,
      image: { base: 'debian-12' },
      resources: { cpus: 1, memory: '1G', disk: '3G' },
      libvirt: { uri: SESSION_URI },
      mounts: [{ source: './share', target: '/work' }],
    },
    { user: TEST_USER, home: true },
  );
  await asUser(`mkdir '${join(p.dir, 'share')}'`);
  const st = await p.rumJson('status');
  assert.deepEqual(st.mounts.map((m: any) => [m.target, m.type]), [['/work', '9p']], 'libvirt has no virtiofs in session mode');
  assert.equal(st.network.mode, 'user');
  await upDownUpDestroy(p, { name: `${DOMAIN_PREFIX}user-session`, share: join(p.dir, 'share'), session: true });
});

test('rum doctor --json as root, installed: the real findings of this sandbox', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const p = await e2eProject(t, { name: `${DOMAIN_PREFIX}doctor`, image: { base: 'debian-12' }, network: { mode: 'nat' } });
  const r = await p.rum('doctor', '--json');
  const doctor = JSON.parse(r.stdout);
  const check = (id: string) => doctor.checks.find((c: any) => c.id === id);
  assert.equal(check('kvm').status, 'warn');
  assert.match(check('kvm').summary, /kvm_pvm/, 'the paravirtual nested KVM of these machines is named');
  assert.equal(check('libvirt').status, 'ok', check('libvirt').summary);
  assert.match(check('group').summary, /root/);
  // The network's real state, as libvirt reports it.
  const info = await virsh(['net-info', 'default']);
  const autostart = /^Autostart:\s+yes/m.test(info);
  assert.equal(check('network').status, autostart ? 'ok' : 'warn', check('network').summary);
  if (!autostart) assert.match(check('network').fix, /net-autostart default/);
  assert.equal(check('virtiofsd').status, 'ok');
  assert.equal(r.code, doctor.ok ? 0 : 1);
});
