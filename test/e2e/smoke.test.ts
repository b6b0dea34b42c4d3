// The harness itself, before rum can boot anything: a hand-made domain (TCG, q35, virtio disk
// on an overlay of the cached image, NoCloud seed as a virtio-scsi cdrom, SLIRP with an ssh
// hostfwd, serial console to a file) boots in the namespace, takes our key, finishes
// cloud-init, reaches the in-namespace apt repo and powers off on ACPI shutdown. Once in
// qemu:///system, once in qemu:///session as the test user. (Installing a package from that
// repo at first boot costs ~20 s more under TCG: rum's provision tests do it.)
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chown, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { execa } from 'execa';
import {
  DOMAIN_PREFIX,
  TEST_USER,
  bootSkipReason,
  freePortInNs,
  guestSsh,
  imagePath,
  repoUrl,
  scratchDir,
  tail,
  userIds,
  virsh,
  waitForDomState,
  waitForSsh,
} from './env.js';

const GUEST_USER = 'rumtest';

function userData(pubKey: string): string {
  return `#cloud-config
users:
  - name: ${GUEST_USER}
    shell: /bin/bash
    lock_passwd: true
    sudo: ALL=(ALL) NOPASSWD:ALL
    ssh_authorized_keys:
      - ${pubKey.trim()}
ssh_pwauth: false
ssh_genkeytypes: [ed25519]
`;
}

function domainXml(o: { name: string; dir: string; port: number }): string {
  const f = (n: string) => join(o.dir, n);
  return `<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>${o.name}</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='${f('disk.qcow2')}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='scsi' model='virtio-scsi'/>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='${f('seed.iso')}'/>
      <target dev='sda' bus='scsi'/>
      <readonly/>
    </disk>
    <serial type='file'>
      <source path='${f('console.log')}'/>
      <target port='0'/>
    </serial>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=n0,hostfwd=tcp:127.0.0.1:${o.port}-:22'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=n0,bus=pcie.0,addr=0x10'/>
  </qemu:commandline>
</domain>
`;
}

async function bootCycle(t: TestContext, mode: 'system' | 'session'): Promise<void> {
  const session = mode === 'session';
  const image = imagePath();
  assert.ok(image, 'guest image');
  const dir = await scratchDir(t, session ? { owner: TEST_USER } : {});
  const name = `${DOMAIN_PREFIX}smoke-${mode}-${randomBytes(3).toString('hex')}`;
  const port = await freePortInNs();

  // Key, overlay, seed: plain tools, as the harness will check rum's own versions of them.
  const key = join(dir, 'id_ed25519');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'rum-e2e', '-f', key]);
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', image, join(dir, 'disk.qcow2')]);
  await writeFile(join(dir, 'meta-data'), `instance-id: ${name}\nlocal-hostname: rumtest-smoke\n`);
  await writeFile(join(dir, 'user-data'), userData(await readFile(`${key}.pub`, 'utf8')));
  await execa('genisoimage', ['-quiet', '-output', 'seed.iso', '-volid', 'cidata', '-joliet', '-rock', 'user-data', 'meta-data'], { cwd: dir });
  await writeFile(join(dir, 'domain.xml'), domainXml({ name, dir, port }));
  if (session) {
    const { uid, gid } = userIds(TEST_USER);
    for (const f of ['disk.qcow2', 'seed.iso', 'domain.xml']) await chown(join(dir, f), uid, gid);
  }

  // Whatever happens below, the domain goes away with the test.
  t.after(async () => {
    await virsh(['destroy', name], { session }).catch(() => undefined);
    await virsh(['undefine', name], { session }).catch(() => undefined);
  });

  let t0 = Date.now();
  await virsh(['define', join(dir, 'domain.xml')], { session });
  const defineMs = Date.now() - t0;
  t0 = Date.now();
  await virsh(['start', name], { session });
  const consoleLog = join(dir, 'console.log');
  const to = { port, key, user: GUEST_USER };
  await waitForSsh(to, { timeoutMs: 180_000, onFail: async () => tail(consoleLog) });
  const sshMs = Date.now() - t0;

  const ci = await guestSsh(to, 'cloud-init status --wait', { timeout: 180_000, reject: false });
  const ciMs = Date.now() - t0;
  assert.match(String(ci.stdout), /status: done/, `cloud-init: ${ci.stdout} ${ci.stderr}\n${tail(consoleLog)}`);
  const who = await guestSsh(to, 'sudo -n id -un');
  assert.equal(String(who.stdout).trim(), 'root', 'passwordless sudo');
  const fetch = `import urllib.request as u; print(u.urlopen("${repoUrl('slirp')}/Packages", timeout=10).read().decode())`;
  const pkgs = await guestSsh(to, `python3 -c '${fetch}'`);
  assert.match(String(pkgs.stdout), /^Package: inotify-tools$/m, 'the guest reaches the apt repo in the namespace');

  t0 = Date.now();
  await virsh(['shutdown', name], { session });
  const offMs = await waitForDomState(name, 'shut off', { session, timeoutMs: 60_000 });
  await virsh(['undefine', name], { session });
  t.diagnostic(
    `${mode}: define ${defineMs} ms, start->ssh ${(sshMs / 1000).toFixed(1)} s, ` +
      `cloud-init done ${(ciMs / 1000).toFixed(1)} s, ACPI shutdown ${(offMs / 1000).toFixed(1)} s`,
  );
}

test('harness: a hand-made guest boots, takes our key, finishes cloud-init, shuts down (qemu:///system)', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  await bootCycle(t, 'system');
});

test(`harness: the same in qemu:///session as ${TEST_USER}`, async (t) => {
  const why = bootSkipReason({ session: true });
  if (why) return t.skip(why);
  await bootCycle(t, 'session');
});
