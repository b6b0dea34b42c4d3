// rum up for real: a guest booted from rum's own artifacts in the test namespace's libvirtd.
// One VM through its life: cold up, a no-op up, a cpus change applied with --restart (data
// kept), --reset (a fresh first boot), destroy. Then the other network mode and session mode.
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { execa } from 'execa';
import { DOMAIN_PREFIX, SYSTEM_URI, bootSkipReason, freePortInNs, repoUrl, tail, virsh } from './env.js';
import { builtIds, e2eProject, httpGetInNs } from './rum.js';

const ALL_NODES = [
  'base-image',
  'defined-domain',
  'domain-xml',
  'layer',
  'meta-data',
  'overlay',
  'running-domain',
  'seed-iso',
  'ssh-keys',
  'ssh-port',
  'ssh-ready',
  'user-data',
];

const lines = (s: string) => s.trim().split('\n').filter(Boolean);

test('rum up: cold boot, no-op, --restart keeps data, --reset starts afresh, destroy (system, user networking)', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const name = `${DOMAIN_PREFIX}up`;
  const p = await e2eProject(t, {
    name,
    image: { base: 'debian-12' },
    resources: { cpus: 1, memory: '1G', disk: '3G' },
    network: { mode: 'user' },
    provision: {
      packages: ['inotify-tools'],
      apt_sources: [`deb [trusted=yes] ${repoUrl('slirp')} ./`],
      system: 'echo system >> /var/lib/rum/system-runs\n',
      boot: 'echo boot >> /var/lib/rum/boot-runs\n',
    },
  }, { suiteCache: true });
  const consoleTail = () => tail(join(p.vmDir, 'console.log'), 40);

  // Cold: every node built, the guest answers, cloud-init is done and did its work.
  const cold = await p.rumJson('up');
  assert.equal(cold.ok, true, `rum up failed: ${JSON.stringify(cold.failure)}\n${consoleTail()}`);
  assert.deepEqual(builtIds(cold), ALL_NODES);
  const status = await p.exec('cloud-init status --wait');
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /status: done/);
  assert.equal((await p.exec('id -un')).stdout.trim(), 'rum');
  assert.equal((await p.exec('sudo -n true && echo sudo-ok')).stdout.trim(), 'sudo-ok');
  assert.deepEqual(lines((await p.exec('cat /var/lib/rum/system-runs')).stdout), ['system']);
  assert.deepEqual(lines((await p.exec('cat /var/lib/rum/boot-runs')).stdout), ['boot']);
  assert.equal((await p.exec('command -v inotifywait')).code, 0, 'provision.packages installed from the local repository');
  assert.equal((await p.exec('cat /var/log/rum/system.status')).stdout.trim(), '0');

  // A second up builds nothing and changes nothing in libvirt.
  const xmlBefore = await virsh(['dumpxml', name]);
  const idBefore = (await virsh(['domid', name])).trim();
  const noop = await p.rumJson('up');
  assert.deepEqual(noop.built, []);
  assert.equal(await virsh(['dumpxml', name]), xmlBefore);
  assert.equal((await virsh(['domid', name])).trim(), idBefore);
  // rum's plans ask libvirt's socket, not virsh: for a running domain both say the same.
  const seen = JSON.parse((await execa(process.execPath, [join(import.meta.dirname, 'snapshot-probe.js'), SYSTEM_URI, name], { timeout: 60_000 })).stdout)[name];
  assert.equal(seen.rpc?.state, 'running');
  assert.deepEqual(seen.rpc, seen.virsh);

  // Data written in the guest, then a cpus change: exactly the XML and the definition are
  // stale; the running guest waits for --restart; the disk is untouched.
  assert.equal((await p.exec('echo keep-me > ~/data && sync')).code, 0);
  await p.editConfig((c) => {
    c.resources.cpus = 2;
    c.resources.disk = '4G'; // grown at the restart, while the guest is off
  });
  const dry = await p.rum('up', '--dry-run', '--json');
  assert.equal(dry.code, 10);
  const plan = JSON.parse(dry.stdout);
  const node = (id: string) => plan.nodes.find((n: any) => n.id === id);
  assert.deepEqual(
    plan.nodes.filter((n: any) => n.state === 'stale').map((n: any) => n.id),
    ['domain-xml', 'defined-domain'],
  );
  assert.deepEqual(node('domain-xml').reason, { type: 'input-changed', fields: ['resources.cpus'] });
  assert.equal(node('running-domain').action, 'kept-needs-restart');
  assert.deepEqual(node('running-domain').reason, { type: 'input-changed', fields: ['resources.disk'] });
  assert.equal(node('overlay').state, 'fresh');

  const plain = await p.rumJson('up'); // without --restart: redefined, but the guest keeps running
  assert.deepEqual(builtIds(plain), ['defined-domain', 'domain-xml']);
  assert.equal((await virsh(['domid', name])).trim(), idBefore, 'never restarted by surprise');
  const restarted = await p.rumJson('up', '--restart');
  assert.equal(restarted.ok, true, JSON.stringify(restarted.failure));
  assert.deepEqual(builtIds(restarted), ['running-domain', 'ssh-ready']);
  assert.equal((await p.exec('nproc')).stdout.trim(), '2');
  assert.equal((await p.exec('lsblk -bdno SIZE /dev/vda')).stdout.trim(), String(4 * 2 ** 30), 'the disk grew');
  assert.equal((await p.exec('cat ~/data')).stdout.trim(), 'keep-me', 'data survives --restart');
  assert.deepEqual(lines((await p.exec('cat /var/lib/rum/boot-runs')).stdout), ['boot', 'boot']);
  assert.deepEqual(lines((await p.exec('cat /var/lib/rum/system-runs')).stdout), ['system'], 'system runs once');

  // --reset: a fresh first boot on a new disk with a new instance-id.
  const iid = (await p.exec('cat /var/lib/cloud/data/instance-id')).stdout.trim();
  const reset = await p.rumJson('up', '--reset', '-y');
  assert.equal(reset.ok, true, JSON.stringify(reset.failure));
  assert.ok(reset.built.includes('overlay') && reset.built.includes('seed-iso'));
  assert.ok(!reset.built.includes('ssh-keys') && !reset.built.includes('base-image'));
  assert.ok(!reset.built.includes('layer'), 'the provisioned layer is reused, not built again');
  assert.equal((await p.exec('command -v inotifywait')).code, 0, 'the new disk sits on the same layer');
  assert.notEqual((await p.exec('cloud-init status --wait >/dev/null; cat /var/lib/cloud/data/instance-id')).stdout.trim(), iid);
  assert.notEqual((await p.exec('cat ~/data')).code, 0, 'the old disk is gone');
  assert.deepEqual(lines((await p.exec('cat /var/lib/rum/system-runs')).stdout), ['system']);

  // destroy: no domain, no directory; idempotent.
  const gone = await p.rum('destroy', '-y');
  assert.equal(gone.code, 0, gone.stderr);
  await assert.rejects(virsh(['domstate', name]));
  await assert.rejects(access(p.vmDir));
  assert.equal((await p.rum('destroy', '-y')).code, 0);
});

test('rum up: NAT networking on the libvirt default network (system)', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const hostPort = await freePortInNs();
  const p = await e2eProject(t, {
    name: `${DOMAIN_PREFIX}nat`,
    image: { base: 'debian-12' },
    resources: { cpus: 1, memory: '1G', disk: '3G' },
    network: { mode: 'nat' },
    ports: [{ host: hostPort, guest: 8000 }],
  });
  const up = await p.rumJson('up');
  assert.equal(up.ok, true, `${JSON.stringify(up.failure)}\n${tail(join(p.vmDir, 'console.log'))}`);
  const addr = await p.exec("ip -4 -o addr show scope global | awk '{print $4}'");
  assert.match(addr.stdout, /^192\.168\.122\.\d+\/24/m);

  // A port forward in nat mode goes through rum's SSH forwarder (rum forward, until Ctrl-C).
  await p.exec('mkdir -p /tmp/www && echo served-over-nat > /tmp/www/index.html && (cd /tmp/www && nohup python3 -m http.server 8000 >/dev/null 2>&1 &)');
  const fwd = p.rumBackground('forward');
  try {
    assert.equal((await httpGetInNs(`http://127.0.0.1:${hostPort}/index.html`)).trim(), 'served-over-nat');
  } finally {
    const f = await fwd.stop();
    assert.equal(f.code, 0, `rum forward ends cleanly on Ctrl-C:\n${f.stderr}`);
  }
  assert.equal((await p.rum('destroy', '-y')).code, 0);
});
