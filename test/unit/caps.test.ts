// Host capabilities: the real verdict on this machine (a /dev/kvm that cannot run guests), and
// each reason on fixture files standing in for /dev/kvm, /proc/cpuinfo and /sys/module.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { cpuFlags, kvmUsable, VIRTIOFSD_CANDIDATES, virtiofsdPath } from '../../src/libvirt/caps.js';

test('this machine: KVM is reported unusable, saying why', async (t) => {
  const flags = cpuFlags(readFileSync('/proc/cpuinfo', 'utf8'));
  const noExtensions = !flags.has('vmx') && !flags.has('svm');
  const pvm = existsSync('/sys/module/kvm_pvm');
  if (!noExtensions && !pvm && existsSync('/dev/kvm')) {
    t.skip('this host exposes vmx/svm and no kvm_pvm: KVM may well be usable here');
    return;
  }
  const v = await kvmUsable();
  assert.equal(v.usable, false);
  if (noExtensions) assert.match(v.why, /neither vmx nor svm/);
  if (pvm) assert.match(v.why, /kvm_pvm/);
});

async function fixture(t: TestContext, opts: { flags: string; pvm?: boolean; devKvm?: boolean }) {
  const dir = await mkdtemp(join(tmpdir(), 'rum-caps-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const devKvm = join(dir, 'kvm');
  if (opts.devKvm !== false) await writeFile(devKvm, '');
  const cpuinfo = join(dir, 'cpuinfo');
  const cpu = (n: number) => `processor\t: ${n}\nvendor_id\t: GenuineIntel\nflags\t\t: ${opts.flags}\n\n`;
  await writeFile(cpuinfo, cpu(0) + cpu(1));
  const sysModule = join(dir, 'module');
  await mkdir(join(sysModule, 'kvm'), { recursive: true });
  if (opts.pvm) await mkdir(join(sysModule, 'kvm_pvm'));
  return { devKvm, cpuinfo, sysModule };
}

test('usable when /dev/kvm opens, the CPU has vmx and the module is not kvm_pvm', async (t) => {
  const v = await kvmUsable(await fixture(t, { flags: 'fpu vme vmx sse2' }));
  assert.deepEqual(v.usable, true, v.why);
  assert.match(v.why, /vmx/);
  assert.equal((await kvmUsable(await fixture(t, { flags: 'fpu svm' }))).usable, true);
});

test('each missing condition is named', async (t) => {
  const noExt = await kvmUsable(await fixture(t, { flags: 'fpu vme hypervisor' }));
  assert.equal(noExt.usable, false);
  assert.match(noExt.why, /neither vmx nor svm/);

  const pvm = await kvmUsable(await fixture(t, { flags: 'fpu vmx', pvm: true }));
  assert.equal(pvm.usable, false);
  assert.match(pvm.why, /kvm_pvm/);
  assert.doesNotMatch(pvm.why, /vmx nor svm/);

  const noDev = await kvmUsable(await fixture(t, { flags: 'vmx', devKvm: false }));
  assert.equal(noDev.usable, false);
  assert.match(noDev.why, /does not exist/);

  const all = await kvmUsable(await fixture(t, { flags: 'fpu', pvm: true, devKvm: false }));
  assert.match(all.why, /does not exist.*neither vmx nor svm.*kvm_pvm/);
});

test('virtiofsdPath finds an executable, preferring the distribution locations', () => {
  const found = virtiofsdPath();
  const expected = VIRTIOFSD_CANDIDATES.find((p) => existsSync(p));
  if (expected) assert.equal(found, expected);
  if (found) accessSync(found, constants.X_OK);
  assert.equal(virtiofsdPath({ PATH: '/nonexistent' }), expected);
});
