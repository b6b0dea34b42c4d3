// rum doctor: each check's deciding step on the outputs it reads (virsh net-info and version,
// iptables -S, /etc/group, socket modes, statfs figures, the kernel log), the time bound, the
// hints elsewhere that point at a check, and the real command's JSON and exit status on this host.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { kvmUsable } from '../../src/libvirt/caps.js';
import { classifyVirshFailure } from '../../src/libvirt/virsh.js';
import { CHECK_IDS, combine, seeDoctor, tildeFor } from '../../src/host/check.js';
import { reportOf, withTimeout } from '../../src/host/doctor.js';
import { forwardVerdict, groupVerdict, libvirtFailure, libvirtVerdict, netVerdict, parseForwardChain, systemSockets, type GroupFacts } from '../../src/host/libvirt-checks.js';
import { denialLines, diskLevel, diskVerdict, kvmFix, kvmVerdict, reachVerdict, securityVerdict, toolVerdict } from '../../src/host/local-checks.js';
import { aclSearchable, qemuIdentity, searchable } from '../../src/host/qemu-reach.js';
import { loginGids, parseGroupFile, runTool, type ToolRun } from '../../src/host/probe.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const SYS = 'qemu:///system';
const ran = (status: number, stdout = '', stderr = ''): ToolRun => ({ status, stdout, stderr });
const GiB = 2 ** 30;

// ---- network ----

const netInfo = (active: string, autostart: string) =>
  `Name:           default\nUUID:           3b6e4a4c-0000-0000-0000-000000000000\nActive:         ${active}\nPersistent:     yes\nAutostart:      ${autostart}\nBridge:         virbr0\n`;

test('network: net-info active and autostarted is fine; not autostarted warns; inactive fails; each with its command', () => {
  assert.deepEqual(netVerdict(ran(0, netInfo('yes', 'yes')), 'default', SYS), {
    finding: { status: 'ok', summary: 'network default is active on virbr0 and autostarted' },
    bridge: 'virbr0',
  });
  const lazy = netVerdict(ran(0, netInfo('yes', 'no')), 'default', SYS).finding;
  assert.equal(lazy.status, 'warn');
  assert.equal(lazy.fix, '`virsh --connect qemu:///system net-autostart default`');
  const down = netVerdict(ran(0, netInfo('no', 'yes')), 'default', SYS).finding;
  assert.equal(down.status, 'fail');
  assert.equal(down.fix, '`virsh --connect qemu:///system net-start default`');
  const both = netVerdict(ran(0, netInfo('no', 'no')), 'default', SYS).finding;
  assert.equal(both.summary, 'network default is not active and not autostarted');
  assert.equal(both.fix, '`virsh --connect qemu:///system net-start default` and `virsh --connect qemu:///system net-autostart default`');
});

test('network: an absent network fails with net-define; a daemon that does not answer only warns', () => {
  const absent = (name: string) =>
    ran(1, '', `error: failed to get network '${name}'\nerror: Network not found: no network with matching name '${name}'\n`);
  const d = netVerdict(absent('default'), 'default', SYS).finding;
  assert.equal(d.status, 'fail');
  assert.match(d.fix ?? '', /^`virsh --connect qemu:\/\/\/system net-define \/usr\/share\/libvirt\/networks\/default\.xml && .*net-autostart default && .*net-start default`$/);
  const other = netVerdict(absent('lab'), 'lab', SYS).finding;
  assert.equal(other.status, 'fail');
  assert.match(other.fix ?? '', /net-define FILE\.xml.*network\.mode: user/);
  const refused = ran(1, '', "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied\n");
  assert.equal(netVerdict(refused, 'default', SYS).finding.status, 'warn');
  assert.equal(netVerdict({ missing: true }, 'default', SYS).finding.status, 'warn');
});

const DOCKER_FORWARD = [
  '-P FORWARD DROP',
  '-A FORWARD -j DOCKER-USER',
  '-A FORWARD -j DOCKER-ISOLATION-STAGE-1',
  '-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  '-A FORWARD -i docker0 ! -o docker0 -j ACCEPT',
].join('\n');

test('iptables -S FORWARD: the policy and the rules', () => {
  assert.deepEqual(parseForwardChain('-P FORWARD ACCEPT\n'), { policy: 'ACCEPT', rules: [] });
  const c = parseForwardChain(DOCKER_FORWARD);
  assert.equal(c.policy, 'DROP');
  assert.equal(c.rules.length, 4);
  assert.deepEqual(parseForwardChain(''), { rules: [] });
});

test("Docker's FORWARD DROP: a warning naming the bridge and the rules to add, unless something lets the bridge through", () => {
  assert.equal(forwardVerdict(ran(0, '-P FORWARD ACCEPT\n'), 'virbr0', true), undefined);
  const cut = forwardVerdict(ran(0, DOCKER_FORWARD), 'virbr0', true);
  assert.equal(cut?.status, 'warn');
  assert.match(cut?.summary ?? '', /FORWARD policy is DROP.*virbr0.*cut off/);
  assert.equal(
    cut?.fix,
    '`sudo iptables -I DOCKER-USER -i virbr0 -j ACCEPT && sudo iptables -I DOCKER-USER -o virbr0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`',
  );
  // No DOCKER-USER chain: the rules go in FORWARD itself.
  assert.match(forwardVerdict(ran(0, '-P FORWARD DROP\n'), 'virbr1', false)?.fix ?? '', /^`sudo iptables -I FORWARD -i virbr1 -j ACCEPT/);
  // libvirt's iptables backend puts its chains in FORWARD: guests get through.
  assert.equal(forwardVerdict(ran(0, `${DOCKER_FORWARD}\n-A FORWARD -j LIBVIRT_FWX\n-A FORWARD -j LIBVIRT_FWI\n`), 'virbr0', true)?.status, 'ok');
  assert.equal(forwardVerdict(ran(0, `${DOCKER_FORWARD}\n-A FORWARD -i virbr0 -j ACCEPT\n`), 'virbr0', true)?.status, 'ok');
  assert.equal(forwardVerdict(ran(0, `${DOCKER_FORWARD}\n-A FORWARD -i virbr10 -j ACCEPT\n`), 'virbr1', true)?.status, 'warn');
  // Not root: iptables cannot be read. Only Docker's presence makes that worth a word.
  const denied = ran(4, '', 'iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n');
  assert.equal(forwardVerdict(denied, 'virbr0', false), undefined);
  assert.equal(forwardVerdict({ missing: true }, 'virbr0', false), undefined);
  const docker = forwardVerdict(denied, 'virbr0', true);
  assert.equal(docker?.status, 'warn');
  assert.match(docker?.fix ?? '', /sudo iptables -S FORWARD/);
});

test('combine: the worst status, summaries and fixes joined', () => {
  assert.deepEqual(combine([{ status: 'ok', summary: 'a' }, { status: 'warn', summary: 'b', fix: 'x' }, { status: 'ok', summary: 'c' }]), {
    status: 'warn',
    summary: 'a; b; c',
    fix: 'x',
  });
  assert.deepEqual(combine([{ status: 'fail', summary: 'a', fix: 'x' }, { status: 'warn', summary: 'b', fix: 'y' }]), { status: 'fail', summary: 'a; b', fix: 'x; y' });
});

// ---- group ----

const GROUP_FILE = `root:x:0:
# a comment
kvm:x:107:
libvirt:x:106:alice, bob
+nisgroup
broken:x:notanumber:alice
alice:x:1000:
`;

test('/etc/group: entries, members trimmed, comments, NIS and broken lines skipped', () => {
  assert.deepEqual(parseGroupFile(GROUP_FILE), [
    { name: 'root', gid: 0, members: [] },
    { name: 'kvm', gid: 107, members: [] },
    { name: 'libvirt', gid: 106, members: ['alice', 'bob'] },
    { name: 'alice', gid: 1000, members: [] },
  ]);
  assert.deepEqual(loginGids('alice', 1000, parseGroupFile(GROUP_FILE)), [1000, 106]);
  assert.deepEqual(loginGids('carol', 1002, parseGroupFile(GROUP_FILE)), [1002]);
});

const facts = (over: Partial<GroupFacts>): GroupFacts => ({
  user: 'alice',
  uid: 1000,
  primaryGid: 1000,
  sessionGids: [1000],
  groups: parseGroupFile(GROUP_FILE),
  socket: { path: '/run/libvirt/libvirt-sock', gid: 106, mode: 0o770 },
  ...over,
});

test('group: the socket group, in /etc/group and in this session', () => {
  const active = groupVerdict(facts({ sessionGids: [1000, 106] }));
  assert.equal(active.status, 'ok');
  assert.equal(active.summary, 'alice is in group libvirt, in this session too; libvirt owns /run/libvirt/libvirt-sock, mode 0770');
  const stale = groupVerdict(facts({}));
  assert.equal(stale.status, 'warn');
  assert.match(stale.summary, /in \/etc\/group but not in this session/);
  assert.equal(stale.fix, 'log out and in again, or `newgrp libvirt`');
  const out = groupVerdict(facts({ user: 'carol', uid: 1002, primaryGid: 1002, sessionGids: [1002] }));
  assert.equal(out.status, 'fail');
  assert.equal(out.fix, '`sudo usermod -aG libvirt $USER`, then log out and in again');
  // A group granted by NSS (LDAP, sssd) is not in /etc/group, but the session has it: fine.
  assert.equal(groupVerdict(facts({ user: 'carol', uid: 1002, primaryGid: 1002, sessionGids: [1002, 106] })).status, 'ok');
  // The socket's group named by gid when /etc/group does not know it.
  const unnamed = groupVerdict(facts({ socket: { path: '/s', gid: 555, mode: 0o660 } }));
  assert.match(unnamed.summary, /not in group gid 555/);
  assert.equal(unnamed.fix, '`sudo usermod -aG 555 $USER`, then log out and in again');
  assert.equal(groupVerdict(facts({ uid: 0, user: 'root' })).status, 'ok');
});

test('group: a world-writable socket (polkit), no socket, no libvirt at all, a root-only socket', () => {
  const polkit = groupVerdict(facts({ user: 'carol', uid: 1002, primaryGid: 1002, sessionGids: [1002], socket: { path: '/run/libvirt/virtqemud-sock', gid: 0, mode: 0o777 } }));
  assert.equal(polkit.status, 'warn');
  assert.match(polkit.summary, /not in group libvirt; libvirt is the one libvirt's polkit rule admits/);
  const { socket: _, ...noSocket } = facts({ sessionGids: [1000, 106] });
  const presumed = groupVerdict(noSocket);
  assert.equal(presumed.status, 'ok');
  assert.match(presumed.summary, /usual group \(no socket to look at/);
  const none = groupVerdict({ ...noSocket, groups: [] });
  assert.equal(none.status, 'warn');
  assert.match(none.fix ?? '', /apt install libvirt-clients libvirt-daemon-system/);
  const rootOnly = groupVerdict(facts({ socket: { path: '/s', gid: 0, mode: 0o700 } }));
  assert.equal(rootOnly.status, 'fail');
  assert.match(rootOnly.fix ?? '', /qemu:\/\/\/session/);
});

test("the system sockets: the URI's own socket= first, else virtqemud's, then libvirtd's", () => {
  assert.deepEqual(systemSockets(SYS), ['/run/libvirt/virtqemud-sock', '/run/libvirt/libvirt-sock']);
  assert.deepEqual(systemSockets('qemu+unix:///system?socket=/tmp/x-sock'), ['/tmp/x-sock']);
});

// ---- libvirt ----

test('libvirt: virsh version parsed; each connection failure gets its fix', () => {
  const version = 'Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\nUsing API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.22\nRunning against daemon: 9.0.0\n';
  assert.deepEqual(libvirtVerdict(ran(0, version), SYS, { systemd: true }), { status: 'ok', summary: 'qemu:///system answers (libvirt 9.0.0, QEMU 7.2.22)' });
  const missing = libvirtVerdict({ missing: true }, SYS, { systemd: true });
  assert.equal(missing.status, 'fail');
  assert.match(missing.fix ?? '', /apt install libvirt-clients.*dnf install libvirt-client/);

  const noSock = (path: string) => `error: failed to connect to the hypervisor\nerror: Failed to connect socket to '${path}': No such file or directory\n`;
  const d = libvirtFailure(noSock('/var/run/libvirt/libvirt-sock'), SYS, { systemd: true });
  assert.equal(d.summary, 'no libvirt daemon is listening on /var/run/libvirt/libvirt-sock: it is not running');
  assert.match(d.fix ?? '', /^`sudo systemctl enable --now libvirtd` \(or `virtqemud\.socket`/);
  assert.equal(libvirtFailure(noSock('/run/libvirt/virtqemud-sock'), SYS, { systemd: true }).fix, '`sudo systemctl enable --now virtqemud.socket`');
  assert.match(libvirtFailure(noSock('/var/run/libvirt/libvirt-sock'), SYS, { systemd: false }).fix ?? '', /sudo virtlogd -d && sudo libvirtd -d/);
  const refused = "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': Connection refused\n";
  assert.match(libvirtFailure(refused, SYS, { systemd: true }).summary, /not running/);

  const denied = "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied\n";
  const p = libvirtFailure(denied, SYS, { systemd: true });
  assert.equal(p.summary, 'this user may not use /var/run/libvirt/libvirt-sock (permission denied)');
  assert.match(p.fix ?? '', /^`sudo usermod -aG libvirt \$USER`, then log out and in again/);
  const polkit = "error: failed to connect to the hypervisor\nerror: authentication unavailable: no polkit agent available to authenticate action 'org.libvirt.unix.manage'\n";
  assert.match(libvirtFailure(polkit, SYS, { systemd: true }).fix ?? '', /usermod -aG libvirt/);

  const noDaemon = "error: failed to connect to the hypervisor\nerror: Cannot find 'libvirtd' in path: No such file or directory\n";
  assert.match(libvirtFailure(noDaemon, 'qemu:///session', { systemd: true }).summary, /not installed/);
  assert.match(libvirtFailure('error: internal error: something new\n', SYS, { systemd: true }).summary, /cannot connect to qemu:\/\/\/system: internal error: something new/);
});

// ---- kvm ----

async function kvmFixture(t: TestContext, opts: { flags: string; devKvm: boolean }) {
  const dir = await mkdtemp(join(tmpdir(), 'rum-doctor-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  if (opts.devKvm) await writeFile(join(dir, 'kvm'), '');
  await writeFile(join(dir, 'cpuinfo'), `processor : 0\nflags : fpu ${opts.flags}\n`);
  return { devKvm: join(dir, 'kvm'), cpuinfo: join(dir, 'cpuinfo'), sysModule: join(dir, 'module') };
}

test("kvm: usable is fine; TCG warns (never fails) with the fix for kvmUsable's most basic reason", async (t) => {
  const ok = kvmVerdict(await kvmUsable(await kvmFixture(t, { flags: 'vmx', devKvm: true })));
  assert.equal(ok.status, 'ok');
  assert.match(ok.summary, /^KVM is usable \(.*vmx\)$/);
  const noDev = kvmVerdict(await kvmUsable(await kvmFixture(t, { flags: 'svm', devKvm: false })));
  assert.equal(noDev.status, 'warn');
  assert.match(noDev.summary, /TCG/);
  assert.match(noDev.fix ?? '', /modprobe kvm_intel/);
  const noVmx = kvmVerdict(await kvmUsable(await kvmFixture(t, { flags: 'sse2', devKvm: false })));
  assert.match(noVmx.fix ?? '', /VT-x\/AMD-V in the firmware/);
  assert.match(kvmFix('/dev/kvm is not readable and writable by this user (join the kvm group)') ?? '', /usermod -aG kvm/);
  assert.equal(kvmFix('the KVM module is kvm_pvm (paravirtual nested KVM), which cannot run QEMU guests'), undefined);
});

// ---- home-access ----

test('searchable: the owner bits win over the group and others bits; an ACL entry of its own decides', () => {
  const q = { name: 'libvirt-qemu', uid: 64055, gids: [64055, 107] };
  assert.equal(searchable({ path: '/h', uid: 64055, gid: 1, mode: 0o700 }, q), true);
  assert.equal(searchable({ path: '/h', uid: 64055, gid: 1, mode: 0o077 }, q), false);
  assert.equal(searchable({ path: '/h', uid: 0, gid: 107, mode: 0o750 }, q), true);
  assert.equal(searchable({ path: '/h', uid: 0, gid: 107, mode: 0o701 }, q), false);
  assert.equal(searchable({ path: '/h', uid: 1000, gid: 1000, mode: 0o711 }, q), true);
  assert.equal(searchable({ path: '/h', uid: 1000, gid: 1000, mode: 0o700 }, q), false);
  assert.equal(searchable({ path: '/h', uid: 1000, gid: 1000, mode: 0o700, acl: true }, q), true);
  const acl = (entry: string) => `user::rwx\n${entry}\ngroup::---\nmask::r-x\nother::---\n`;
  assert.equal(aclSearchable(acl('user:libvirt-qemu:--x'), q), true);
  assert.equal(aclSearchable(acl('user:64055:--x'), q), true);
  assert.equal(aclSearchable(acl('user:libvirt-qemu:r--'), q), false);
  assert.equal(aclSearchable(acl('user:someone:--x'), q), undefined, 'no entry of its own: the bits decide');
  assert.equal(aclSearchable('user:libvirt-qemu:--x\nmask::r--\n', q), false, 'the mask limits it');
});

test("qemuIdentity: the user's own QEMU in session mode, libvirt's QEMU user in system mode", () => {
  const files = {
    passwd: 'root:x:0:0::/root:/bin/sh\nlibvirt-qemu:x:64055:107:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin\n',
    group: 'kvm:x:107:\nlibvirt-qemu:x:64055:libvirt-qemu\n',
  };
  const session = qemuIdentity('qemu:///session', files);
  assert.equal(session?.uid, process.getuid!());
  const system = qemuIdentity('qemu:///system', files);
  if (process.getuid!() === 0) assert.deepEqual(system, { name: 'root', uid: 0, gids: [0] });
  else assert.deepEqual(system, { name: 'libvirt-qemu', uid: 64055, gids: [107, 64055] });
  const fedora = { passwd: 'qemu:x:107:107:qemu user:/:/sbin/nologin\n', group: 'qemu:x:107:\n' };
  if (process.getuid!() !== 0) assert.equal(qemuIdentity('qemu:///system', fedora)?.name, 'qemu');
});

test('home-access: every directory QEMU cannot pass through, and the setfacl that opens them', () => {
  const dir = (path: string, uid: number, mode: number) => ({ path, uid, gid: uid, mode });
  const who = { name: 'libvirt-qemu', uid: 64055, gids: [107, 64055] };
  const fine = reachVerdict(
    {
      uri: SYS,
      who,
      home: '/home/alice',
      targets: [
        { path: '/home/alice/.local/share/rum', chain: [dir('/', 0, 0o755), dir('/home', 0, 0o755), dir('/home/alice', 1000, 0o711)], missing: '/home/alice/.local' },
        { path: '/home/alice/.cache/rum/images', chain: [dir('/', 0, 0o755), dir('/home', 0, 0o755), dir('/home/alice', 1000, 0o711)], missing: '/home/alice/.cache' },
      ],
    },
    1000,
  );
  assert.equal(fine.status, 'ok');
  assert.match(fine.summary, /^QEMU runs as libvirt-qemu under qemu:\/\/\/system and can pass through every directory down to ~\/\.local\/share\/rum and ~\/\.cache\/rum\/images \(neither is made yet/);
  const blocked = reachVerdict(
    {
      uri: SYS,
      who,
      home: '/home/alice',
      targets: [
        { path: '/home/alice/.cache/rum/images', chain: [dir('/', 0, 0o755), dir('/home', 0, 0o755), dir('/home/alice', 1000, 0o755), dir('/home/alice/.cache', 1000, 0o700)] },
        { path: '/srv/vms/rum', chain: [dir('/', 0, 0o755), dir('/srv', 0, 0o700), dir('/srv/vms', 1000, 0o755)] },
      ],
    },
    1000,
  );
  assert.equal(blocked.status, 'fail');
  assert.match(blocked.summary, /cannot pass through \/home\/alice\/\.cache \(mode 0700, uid 1000\), \/srv \(mode 0700, uid 0\) to reach/);
  assert.equal(blocked.fix, '`setfacl -m u:libvirt-qemu:x /home/alice/.cache && sudo setfacl -m u:libvirt-qemu:x /srv` (setfacl is in package acl; chmod o+x on them works too)');
  assert.equal(tildeFor('/home/alice2/x', '/home/alice'), '/home/alice2/x');
});

// ---- security ----

test('security: denials of QEMU or libvirt in the last hour; never a failure', () => {
  const now = 1_700_000_000;
  const log = [
    `audit: type=1400 audit(${now - 60}.123:45): apparmor="DENIED" operation="open" profile="libvirt-3b6e4a4c" name="/srv/x" comm="qemu-system-x86"`,
    `audit: type=1400 audit(${now - 7200}.123:46): apparmor="DENIED" operation="open" profile="libvirt-3b6e4a4c" name="/old" comm="qemu-system-x86"`,
    `audit: type=1400 audit(${now - 60}.123:47): apparmor="DENIED" operation="open" profile="snap.firefox" name="/x" comm="firefox"`,
    `type=AVC msg=audit(${now - 10}.5:9): avc:  denied  { read } for pid=1 comm="qemu-kvm" scontext=system_u:system_r:svirt_t:s0`,
    'some other kernel line',
  ].join('\n');
  assert.equal(denialLines(log, now - 3600).length, 2);
  assert.equal(denialLines(log, 0).length, 3);

  assert.equal(securityVerdict({ apparmor: false, apparmorProfile: false, denials: { readable: false } }).status, 'ok');
  const aaBlind = securityVerdict({ apparmor: true, apparmorProfile: true, denials: { readable: false } });
  assert.equal(aaBlind.status, 'ok');
  assert.match(aaBlind.summary, /could not read the kernel or audit log \(root needed\)/);
  assert.equal(securityVerdict({ apparmor: false, apparmorProfile: false, selinux: 'enforcing', denials: { readable: false } }).status, 'warn');
  const clean = securityVerdict({ apparmor: true, apparmorProfile: false, denials: { readable: true, from: 'the kernel log', lines: [] } });
  assert.equal(clean.status, 'ok');
  assert.match(clean.summary, /no libvirtd profile.*no denial/);
  const denied = securityVerdict({ apparmor: true, apparmorProfile: true, denials: { readable: true, from: 'the kernel log', lines: denialLines(log, now - 3600) } });
  assert.equal(denied.status, 'warn');
  assert.match(denied.summary, /2 denials of QEMU or libvirt in the last hour \(the kernel log\), the last: type=AVC/);
  assert.match(denied.fix ?? '', /journalctl -k/);
});

// ---- tools and disk ----

test('tools: missing fails with the apt and dnf package names; the version is read', () => {
  const names: [Parameters<typeof toolVerdict>[0], RegExp][] = [
    ['qemu-img', /apt install qemu-utils.*dnf install qemu-img/],
    ['ssh', /apt install openssh-client`.*dnf install openssh-clients/],
    ['qemu', /apt install qemu-system-x86.*dnf install qemu-kvm/],
  ];
  for (const [tool, install] of names) {
    const f = toolVerdict(tool, tool, { missing: true });
    assert.equal(f.status, 'fail');
    assert.match(f.fix ?? '', install);
  }
  assert.deepEqual(toolVerdict('qemu-img', 'qemu-img', ran(0, 'qemu-img version 7.2.22 (Debian 1:7.2+dfsg-7)\nCopyright (c) 2003-2022\n')), {
    status: 'ok',
    summary: 'qemu-img: 7.2.22',
  });
  assert.deepEqual(toolVerdict('ssh', 'ssh', ran(0, '', 'OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.19 27 Jan 2026\n')), { status: 'ok', summary: 'ssh: OpenSSH_9.2p1' });
  const broken = toolVerdict('qemu', '/usr/bin/qemu-system-x86_64', ran(127, '', 'error while loading shared libraries: libfoo.so\n'));
  assert.equal(broken.status, 'fail');
  assert.match(broken.summary, /failed: error while loading shared libraries/);
});

test('disk: under 2 GiB fails, under 10 GiB warns, with the figure; one line per filesystem', () => {
  assert.equal(diskLevel(2 * GiB - 1), 'fail');
  assert.equal(diskLevel(2 * GiB), 'warn');
  assert.equal(diskLevel(10 * GiB - 1), 'warn');
  assert.equal(diskLevel(10 * GiB), 'ok');
  assert.deepEqual(diskVerdict([{ paths: ['~/.cache/rum', '~/.local/share/rum'], freeBytes: 50 * GiB }]), {
    status: 'ok',
    summary: '50.0 GiB free for ~/.cache/rum and ~/.local/share/rum',
  });
  const two = diskVerdict([
    { paths: ['~/.cache/rum'], freeBytes: 5.5 * GiB },
    { paths: ['/data/rum'], freeBytes: 1.2 * GiB },
  ]);
  assert.equal(two.status, 'fail');
  assert.equal(two.summary, '5.5 GiB free for ~/.cache/rum; 1.2 GiB free for /data/rum');
  assert.match(two.fix ?? '', /under 10 GiB.*XDG_DATA_HOME.*under 2 GiB/);
});

// ---- the time bound ----

test('withTimeout: a slow check reads "did not answer" and its tool is killed; a throw reads as a warning', async () => {
  let sleep: Promise<ToolRun> | undefined;
  const started = Date.now();
  const slow = await withTimeout('libvirt', 100, async (signal) => {
    sleep = runTool('sleep', ['10'], { signal });
    await sleep;
    return { status: 'ok', summary: 'never seen' };
  });
  assert.deepEqual(slow, { id: 'libvirt', status: 'warn', summary: 'did not answer within 0.1 s' });
  const killed = await sleep!;
  assert.ok(Date.now() - started < 2000, 'sleep 10 was killed, not waited for');
  assert.ok(!killed.missing && killed.status === null, 'killed by a signal');
  assert.deepEqual(await withTimeout('disk', 1000, async () => ({ status: 'ok', summary: 'fine' })), { id: 'disk', status: 'ok', summary: 'fine' });
  assert.deepEqual(
    await withTimeout('disk', 1000, async () => {
      throw new Error('boom');
    }),
    { id: 'disk', status: 'warn', summary: 'could not check: boom' },
  );
  assert.deepEqual(await runTool('rum-no-such-tool-here', []), { missing: true });
});

test('the report: ok unless a check failed (warnings allowed)', () => {
  assert.equal(reportOf(SYS, [{ id: 'kvm', status: 'warn', summary: 'tcg' }]).ok, true);
  assert.equal(reportOf(SYS, [{ id: 'kvm', status: 'warn', summary: 'tcg' }, { id: 'ssh', status: 'fail', summary: 'x', fix: 'y' }]).ok, false);
});

// ---- the hints of errors that a doctor check looks at ----

test("host problems' hints end by naming the doctor check; others do not", () => {
  const cases: [string, string, string | undefined][] = [
    ["error: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory", SYS, 'libvirt'],
    ["error: Cannot find 'virtqemud' in path: No such file or directory", 'qemu:///session', 'libvirt'],
    ["error: Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied", SYS, 'group'],
    ["error: Cannot access storage file '/home/me/.local/share/rum/x/disk.qcow2' (as uid:1000, gid:1000): Permission denied", SYS, 'home-access'],
    ["error: Requested operation is not valid: network 'default' is not active", SYS, 'network'],
    ["error: Network not found: no network with matching name 'nat0'", SYS, 'network'],
    ['error: invalid argument: could not find capabilities for arch=x86_64 domaintype=kvm', SYS, 'kvm'],
    ['error: Cannot find QEMU binary /usr/bin/qemu-system-x86_64: No such file or directory', SYS, 'qemu'],
    ["error: Domain not found: no domain with matching name 'rum-x'", SYS, undefined],
  ];
  for (const [stderr, uri, check] of cases) {
    const { hint } = classifyVirshFailure(stderr, uri);
    if (check) {
      assert.ok(CHECK_IDS.includes(check as (typeof CHECK_IDS)[number]));
      assert.ok(hint?.endsWith(seeDoctor(check as (typeof CHECK_IDS)[number])), `${stderr}: ${hint}`);
    } else assert.doesNotMatch(hint ?? '', /rum doctor/);
  }
  assert.equal(seeDoctor('libvirt'), '; `rum doctor` checks this host (libvirt)');
  assert.equal(classifyVirshFailure('error: Cannot find QEMU binary /usr/bin/qemu-system-x86_64: No such file or directory', SYS).kind, 'no-emulator');
});

// ---- the real command on this host ----

function rum(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('rum doctor --json on this host: every check once, in order, the documented shape, exit 1 exactly when one failed', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rum-doctor-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const r = await rum(['doctor', '--json'], { cwd: dir });
  const report = JSON.parse(r.stdout) as { ok: boolean; uri: string; checks: { id: string; status: string; summary: string; fix?: string }[] };
  assert.deepEqual(Object.keys(report), ['ok', 'uri', 'checks']);
  assert.equal(report.uri, 'qemu:///system');
  assert.deepEqual(report.checks.map((c) => c.id), [...CHECK_IDS]);
  for (const c of report.checks) {
    assert.ok(['ok', 'warn', 'fail'].includes(c.status), c.id);
    assert.ok(c.summary.length > 0, c.id);
    assert.deepEqual(Object.keys(c).filter((k) => !['id', 'status', 'summary', 'fix'].includes(k)), []);
    if (c.status === 'fail') assert.ok(c.fix, `${c.id} fails without a fix`);
  }
  assert.equal(report.ok, !report.checks.some((c) => c.status === 'fail'));
  assert.equal(r.code, report.ok ? 0 : 1);
  assert.match(report.checks.find((c) => c.id === 'libvirt')!.summary, /URI: the default, no rum\.yaml here/);
});

test('rum doctor with a broken rum.yaml: the default URI, said so; human lines without colour under NO_COLOR', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rum-doctor-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'rum.yaml'), 'image: { base: debian-12 }\nresources: { memroy: 2G }\n');
  const r = await rum(['doctor'], { cwd: dir, env: { NO_COLOR: '1', FORCE_COLOR: '1' } });
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines.length, CHECK_IDS.length + 1);
  assert.doesNotMatch(r.stdout, /\x1b\[/);
  lines.slice(0, -1).forEach((l, i) => assert.match(l, new RegExp(`^[✓!✗] ${CHECK_IDS[i]} +\\S`)));
  assert.match(r.stdout, new RegExp(`libvirt .*URI: the default, as ${join(dir, 'rum.yaml').replace(/[.]/g, '\\.')} has a problem`));
  const colour = await rum(['doctor'], { cwd: dir, env: { FORCE_COLOR: '1', NO_COLOR: undefined } });
  assert.match(colour.stdout, /\x1b\[/);
});
