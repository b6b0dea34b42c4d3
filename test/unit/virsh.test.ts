// The virsh wrapper against the real virsh binary: no virsh on PATH, a qemu:///system URI with
// no daemon behind it, and libvirt's in-process test driver (test:///default: a mock hypervisor
// that lives inside virsh, so no daemon and no QEMU run) for output parsing and "absent" values.
// Nothing here starts libvirtd or qemu.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { execa } from 'execa';
import { RumError } from '../../src/errors.js';
import { asState, classifyVirshFailure, lastMeaningfulLine, parseDhcpLeases, Virsh, VirshError } from '../../src/libvirt/virsh.js';

const TEST_URI = 'test:///default';

test('virsh missing from PATH: VIRSH_MISSING with an install hint', async () => {
  const virsh = new Virsh('qemu:///system', { env: { PATH: '/nonexistent-rum-test' } });
  await assert.rejects(
    virsh.domainState('anything'),
    (err: unknown) =>
      err instanceof RumError && err.code === 'VIRSH_MISSING' && /not installed/.test(err.message) && /libvirt-clients/.test(err.hint ?? ''),
  );
});

test('qemu:///system with no daemon: LIBVIRT, the socket named, a hint to start libvirtd', async (t) => {
  const daemons = await execa('pgrep', ['-x', 'libvirtd|virtqemud'], { reject: false });
  if (daemons.exitCode === 0 || existsSync('/run/libvirt/libvirt-sock') || existsSync('/run/libvirt/virtqemud-sock')) {
    t.skip('a libvirt daemon is running here, so the no-daemon failure cannot be observed');
    return;
  }
  const virsh = new Virsh('qemu:///system');
  for (const call of [() => virsh.domainState('rum-x'), () => virsh.list(), () => virsh.netInfo('default')]) {
    await assert.rejects(call(), (err: unknown) => {
      assert.ok(err instanceof VirshError, String(err));
      assert.equal(err.code, 'LIBVIRT');
      assert.equal(err.kind, 'no-daemon');
      assert.match(err.message, /^virsh (domstate|list|net-info): Failed to connect socket to '[^']*libvirt[^']*-sock': No such file or directory$/);
      assert.match(err.hint ?? '', /systemctl start libvirtd/);
      return true;
    });
  }
});

test('a system URI whose socket has no daemon (explicit socket path): same mapping, whatever runs here', async () => {
  const socket = '/nonexistent-rum-test/libvirt-sock';
  const virsh = new Virsh(`qemu+unix:///system?socket=${socket}`);
  await assert.rejects(virsh.version(), (err: unknown) => {
    assert.ok(err instanceof VirshError, String(err));
    assert.equal(err.code, 'LIBVIRT');
    assert.equal(err.kind, 'no-daemon');
    assert.equal(err.message, `virsh version: Failed to connect socket to '${socket}': No such file or directory`);
    assert.match(err.hint ?? '', new RegExp(`no libvirt daemon is listening on ${socket}.*systemctl start libvirtd`));
    return true;
  });
});

test('test driver: states, XML, lists and absent things as values', async () => {
  const virsh = new Virsh(TEST_URI);
  assert.equal(await virsh.domainState('test'), 'running');
  assert.equal(await virsh.domainState('no-such-domain'), undefined);
  assert.match((await virsh.dumpxml('test')) ?? '', /<name>test<\/name>/);
  assert.match((await virsh.dumpxml('test', { inactive: true })) ?? '', /<domain type='test'>/);
  assert.equal(await virsh.dumpxml('no-such-domain'), undefined);
  assert.deepEqual(await virsh.list(), ['test']);
  assert.equal(await virsh.start('test'), 'already-running');
  assert.equal(await virsh.shutdown('test'), 'requested');
  assert.equal(await virsh.destroy('no-such-domain'), 'absent');
  assert.equal(await virsh.undefine('no-such-domain'), 'absent');
  assert.deepEqual(await virsh.domifaddr('test'), ['192.168.122.3']);
  assert.deepEqual(await virsh.domifaddr('test', { source: 'lease' }), ['192.168.122.3']);
  assert.equal(await virsh.domifaddr('no-such-domain'), undefined);
  // A name that looks like an option is passed as a value, not parsed as a flag.
  assert.equal(await virsh.domainState('--help'), undefined);
});

test('test driver: a domain snapshot (state and persistent XML) in one virsh process', async () => {
  const virsh = new Virsh(TEST_URI);
  const snap = await virsh.domainSnapshot('test');
  assert.equal(snap.state, 'running');
  assert.equal(snap.inactiveXml, await virsh.dumpxml('test', { inactive: true }));
  assert.deepEqual(await virsh.domainSnapshot('no-such-domain'), { state: undefined, inactiveXml: undefined });
  // Not a plain word: never handed to virsh's command parser (two plain calls instead).
  assert.deepEqual(await virsh.domainSnapshot('x; destroy test'), { state: undefined, inactiveXml: undefined });
  assert.deepEqual(await virsh.domainSnapshot('--help'), { state: undefined, inactiveXml: undefined });
  assert.equal(await virsh.domainState('test'), 'running');
  // A daemon that is not there is still an error, not an absent domain.
  await assert.rejects(new Virsh('qemu+unix:///system?socket=/nonexistent/sock').domainSnapshot('test'), (e: unknown) => {
    assert.ok(e instanceof VirshError);
    assert.equal(e.kind, 'no-daemon');
    assert.match(e.message, /^virsh domstate: /);
    return true;
  });
});

test('test driver: networks', async () => {
  const virsh = new Virsh(TEST_URI);
  assert.deepEqual(await virsh.netInfo('default'), {
    name: 'default',
    uuid: 'dd8fe884-6c02-601e-7551-cca97df1c5df',
    active: true,
    persistent: true,
    autostart: false,
    bridge: 'virbr0',
  });
  assert.equal(await virsh.netInfo('no-such-net'), undefined);
  assert.equal(await virsh.netStart('default'), 'already-active');
  assert.equal(await virsh.netDhcpLeases('no-such-net'), undefined);
});

test('test driver: version, and failures worded as "virsh <cmd>: <cause>"', async () => {
  const virsh = new Virsh(TEST_URI);
  const v = await virsh.version();
  assert.match(v.library, /^\d+\.\d+\.\d+$/);
  assert.equal(v.hypervisor?.name, 'TEST');
  assert.equal(v.daemon, undefined); // in-process driver: no daemon on the other end

  await assert.rejects(virsh.start('no-such-domain'), (err: unknown) => {
    assert.ok(err instanceof VirshError);
    assert.equal(err.kind, 'no-domain');
    assert.equal(err.message, "virsh start: failed to get domain 'no-such-domain'");
    assert.match(err.hint ?? '', /virsh --connect test:\/\/\/default list --all/);
    return true;
  });
  await assert.rejects(virsh.define('/nonexistent-rum-test/domain.xml'), (err: unknown) => {
    assert.ok(err instanceof VirshError);
    assert.equal(err.message, "virsh define: Failed to open file '/nonexistent-rum-test/domain.xml': No such file or directory");
    assert.equal(err.kind, 'file-access');
    return true;
  });
  // The test driver has no DHCP leases: the cause, not the generic first line, is the message.
  await assert.rejects(virsh.netDhcpLeases('default'), (err: unknown) => {
    assert.ok(err instanceof VirshError);
    assert.equal(err.kind, 'other');
    assert.match(err.message, /^virsh net-dhcp-leases: this function is not supported by the connection driver/);
    return true;
  });
});

// The messages libvirt 9's QEMU driver prints, which only a running daemon can produce.
test('the hint table: every known failure gets its kind and hint', () => {
  const sys = 'qemu:///system';
  const cases: [string, string, string, RegExp | undefined][] = [
    [
      "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/virtqemud-sock': Connection refused",
      sys, 'no-daemon', /systemctl start libvirtd/,
    ],
    [
      "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied",
      sys, 'permission', /libvirt group.*qemu:\/\/\/session/,
    ],
    [
      "error: failed to connect to the hypervisor\nerror: authentication unavailable: no polkit agent available to authenticate action 'org.libvirt.unix.manage'",
      sys, 'permission', /libvirt group/,
    ],
    [
      "error: Failed to start domain 'rum-x'\nerror: Requested operation is not valid: network 'default' is not active",
      sys, 'network-inactive', /net-start default/,
    ],
    ["error: failed to get network 'nat0'\nerror: Network not found: no network with matching name 'nat0'", sys, 'no-network', /net-list --all/],
    ["error: failed to get domain 'rum-x'\nerror: Domain not found: no domain with matching name 'rum-x'", sys, 'no-domain', /list --all/],
    ["error: Failed to destroy domain 'rum-x'\nerror: Requested operation is not valid: domain is not running", sys, 'not-running', undefined],
    ["error: Failed to start domain 'rum-x'\nerror: Requested operation is not valid: domain is already active", sys, 'already-active', undefined],
    ["error: Failed to start network default\nerror: Requested operation is not valid: network is already active", sys, 'already-active', undefined],
    [
      "error: Failed to start domain 'rum-x'\nerror: Cannot access storage file '/home/me/.local/share/rum/x/disk.qcow2' (as uid:64055, gid:64055): Permission denied",
      sys, 'file-access', /libvirt-qemu.*disk\.qcow2/,
    ],
    [
      `error: Failed to start domain 'rum-x'\nerror: internal error: qemu unexpectedly closed the monitor: qemu-system-x86_64: -device {"driver":"virtio-9p-pci","id":"fs1"}: cannot initialize fsdev 'fsdev-fs1': failed to open '/home/me/p/docs': Permission denied`,
      sys, 'file-access', /\/home\/me\/p\/docs.*rum doctor/,
    ],
    [
      "error: Failed to define domain from d.xml\nerror: invalid argument: could not find capabilities for arch=x86_64 domaintype=kvm",
      sys, 'no-kvm', /domain type qemu/,
    ],
    ['error: internal error: something new', sys, 'other', undefined],
  ];
  for (const [stderr, uri, kind, hint] of cases) {
    const c = classifyVirshFailure(stderr, uri);
    assert.equal(c.kind, kind, stderr);
    if (hint) assert.match(c.hint ?? '', hint, stderr);
  }
  assert.equal(lastMeaningfulLine('error: one\nerror: two\n\n'), 'two');
  assert.equal(lastMeaningfulLine(''), undefined);
});

test('net-dhcp-leases table parsing', () => {
  const out = [
    ' Expiry Time           MAC address         Protocol   IP address           Hostname   Client ID or DUID',
    '-----------------------------------------------------------------------------------------------------------',
    ' 2025-01-02 03:04:05   52:54:00:AA:bb:cc   ipv4       192.168.122.45/24    rum-demo   ff:00:00:00:01:00:01:2e',
    ' 2025-01-02 03:04:06   52:54:00:11:22:33   ipv4       192.168.122.46/24    -          -',
    '',
  ].join('\n');
  assert.deepEqual(parseDhcpLeases(out), [
    { expiry: '2025-01-02 03:04:05', mac: '52:54:00:aa:bb:cc', protocol: 'ipv4', address: '192.168.122.45', prefix: 24, hostname: 'rum-demo' },
    { expiry: '2025-01-02 03:04:06', mac: '52:54:00:11:22:33', protocol: 'ipv4', address: '192.168.122.46', prefix: 24 },
  ]);
  assert.deepEqual(parseDhcpLeases(out.split('\n').slice(0, 2).join('\n')), []);
});

test('domain states with their reason: a managed save is rum\'s "suspended"', () => {
  assert.equal(asState('shut off (saved)'), 'suspended');
  assert.equal(asState('shut off (shutdown)'), 'shut off');
  assert.equal(asState('shut off'), 'shut off');
  assert.equal(asState('running (booted)'), 'running');
  assert.equal(asState('paused (I/O error)'), 'paused');
  assert.equal(asState('in shutdown (user)'), 'in shutdown');
  assert.equal(asState('something new'), 'unknown');
});
