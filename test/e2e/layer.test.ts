// Provisioned layers on real guests: the first project with packages builds the layer in a
// throwaway builder; a second project provisioned alike boots on it without running apt; the two
// guests are different machines (machine-id, host keys, DHCP leases); --reset reuses it; a
// package change names the layer and waits for --reset; a failed build keeps nothing and shows
// the builder's console; rum gc keeps a layer while a disk sits on it.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DOMAIN_PREFIX, bootSkipReason, repoUrl, tail, virsh } from './env.js';
import { builtIds, e2eProject, type E2eProject } from './rum.js';

const provisioned = (name: string) => ({
  name,
  image: { base: 'debian-12' },
  resources: { cpus: 1, memory: '1G', disk: '3G' },
  network: { mode: 'nat' }, // both on libvirt's default network: one DHCP server sees both
  provision: {
    packages: ['inotify-tools'],
    apt_sources: [`deb [trusted=yes] ${repoUrl('nat')} ./`],
    image: 'echo "made by the layer build" > /etc/rum-layer-proof\n',
  },
});

const layersOf = async (p: E2eProject) => (await readdir(join(p.cacheHome, 'rum/images/layers')).catch(() => [] as string[])).sort();
const consoleOf = (p: E2eProject) => tail(join(p.vmDir, 'console.log'), 40);

test('layers: built once, shared by a second project without apt, reused by --reset, kept by gc while used', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const a = await e2eProject(t, provisioned(`${DOMAIN_PREFIX}layer-a`));
  const b = await e2eProject(t, provisioned(`${DOMAIN_PREFIX}layer-b`), { like: a });

  // A: the plan says the key is not cached; up builds it.
  const planA = await a.rumJson('up', '--dry-run');
  assert.match(planA.nodes.find((n: any) => n.id === 'layer').note ?? '', /key known once the base image is fetched|not in cache/);
  const upA = await a.rumJson('up');
  assert.equal(upA.ok, true, `${JSON.stringify(upA.failure)}\n${consoleOf(a)}`);
  assert.ok(upA.built.includes('layer'));
  const layers = await layersOf(a);
  assert.equal(layers.filter((f) => f.endsWith('.qcow2')).length, 1, `one layer: ${layers.join(' ')}`);
  assert.equal((await a.exec('cat /etc/rum-layer-proof')).stdout.trim(), 'made by the layer build');

  // B: same provisioning, same cache: cached, no builder boots (no new layer file), and the
  // guest's own first boot ran no apt at all.
  // The key needs the base image's digest: once B has it (from the cache: no download), the plan knows.
  assert.equal((await b.rum('build', 'base-image')).code, 0);
  const planB = await b.rumJson('up', '--dry-run');
  assert.match(planB.nodes.find((n: any) => n.id === 'layer').note, /^cached: /);
  const upB = await b.rumJson('up');
  assert.equal(upB.ok, true, `${JSON.stringify(upB.failure)}\n${consoleOf(b)}`);
  assert.deepEqual(await layersOf(b), layers, 'no second build');
  assert.equal((await b.exec('command -v inotifywait')).code, 0, 'the package is there');
  assert.equal((await b.exec('cat /etc/rum-layer-proof')).stdout.trim(), 'made by the layer build');
  const bootLog = await b.exec('sudo grep -c -e apt-get -e package_update /var/log/cloud-init.log; sudo grep -c Start-Date /var/log/apt/history.log');
  assert.deepEqual(bootLog.stdout.trim().split('\n'), ['0', '1'], `cloud-init ran no apt; apt's history has the layer's one run only\n${bootLog.stderr}`);

  // Two machines, not two copies of the builder.
  // (The public key file has no final newline.)
  const facts = async (p: E2eProject) =>
    (await p.exec('cat /etc/machine-id; echo; sudo cat /etc/ssh/ssh_host_ed25519_key.pub; echo; ls /var/lib/cloud/instances')).stdout.split('\n').filter(Boolean);
  const [fa, fb] = [await facts(a), await facts(b)];
  assert.match(fa[0]!, /^[0-9a-f]{32}$/);
  assert.notEqual(fa[0], fb[0], 'machine-ids differ');
  assert.notEqual(fa[1], fb[1], 'host keys differ');
  assert.deepEqual(fb.slice(2), [`rum-${DOMAIN_PREFIX}layer-b-1`], "no cloud-init instance of the builder's is left");
  const leases = await virsh(['net-dhcp-leases', 'default']);
  const addr = async (p: E2eProject) => (await p.exec("ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1")).stdout.trim();
  const [ipA, ipB] = [await addr(a), await addr(b)];
  assert.notEqual(ipA, ipB, 'each has its own lease');
  assert.ok(leases.includes(ipA) && leases.includes(ipB), leases);

  // rum images: the layer, its packages and its base, used by both projects.
  const images = (await b.rumJson('images')).images as any[];
  const row = images.find((i) => i.kind === 'layer');
  assert.deepEqual(row?.packages, ['inotify-tools'], JSON.stringify(images));
  assert.deepEqual(row.usedBy.map((u: any) => u.config).sort(), [join(a.dir, 'rum.yaml'), join(b.dir, 'rum.yaml')].sort());
  assert.ok(images.some((i) => i.kind === 'base' && i.path === row.base && i.usedBy.length === 2), 'the base is used through the layer');

  // A package change: the layer is stale, the disk waits for --reset and the plan says why.
  await b.editConfig((c) => c.provision.packages.push('libinotifytools0'));
  const changed = await b.rum('up', '--dry-run');
  assert.equal(changed.code, 10);
  assert.match(changed.stdout, /^layer\s+fetched\s+stale → rebuild — provision\.packages changed .*not in cache/m);
  assert.match(changed.stdout, /^overlay\s+stateful\s+kept-needs-reset/m);
  assert.match(changed.stdout, /the provisioned layer changed .*`rum up --reset` makes a fresh disk on the new one/);
  await b.editConfig((c) => c.provision.packages.pop());

  // --reset: a fresh disk on the cached layer; nothing is built for it.
  const reset = await b.rumJson('up', '--reset', '-y');
  assert.equal(reset.ok, true, `${JSON.stringify(reset.failure)}\n${consoleOf(b)}`);
  assert.ok(!reset.built.includes('layer') && reset.built.includes('overlay'), builtIds(reset).join(' '));
  assert.deepEqual(await layersOf(b), layers);
  assert.equal((await b.exec('command -v inotifywait')).code, 0);

  // gc: the layer stays while any disk sits on it; with both gone, it goes with its base.
  assert.equal((await a.rum('destroy', '-y')).code, 0);
  const keep = await b.rumJson('gc');
  assert.deepEqual(await layersOf(b), layers, `gc kept the layer b uses: ${JSON.stringify(keep)}`);
  assert.equal((await b.rum('destroy', '-y')).code, 0);
  const dry = await b.rum('gc', '--dry-run');
  assert.equal(dry.code, 0, dry.stderr);
  assert.deepEqual(await layersOf(b), layers, 'a dry run deletes nothing');
  const gc = await b.rumJson('gc');
  assert.deepEqual((await layersOf(b)).filter((f) => f.endsWith('.qcow2')), [], JSON.stringify(gc));
  const left = (await readdir(join(b.cacheHome, 'rum/images'))).filter((f) => f.endsWith('.img'));
  assert.deepEqual(left, [], 'the base image nothing uses went too');
});

test('layers: a failed build keeps no layer and shows the console', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const p = await e2eProject(t, {
    ...provisioned(`${DOMAIN_PREFIX}layer-bad`),
    network: { mode: 'user' },
    provision: { packages: ['no-such-package-rum'], apt_sources: [`deb [trusted=yes] ${repoUrl('slirp')} ./`] },
  });
  const r = await p.rum('up');
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /layer: building the provisioned layer failed: apt-get install exited 100; no layer was kept/);
  assert.match(r.stderr, /Unable to locate package no-such-package-rum/, "the builder's console is shown");
  assert.match(r.stderr, /its whole console: .*\.failed\.log/);
  assert.deepEqual((await layersOf(p)).filter((f) => !f.endsWith('.failed.log')), [], 'no layer, no build directory, no lock');
  const log = (await layersOf(p)).find((f) => f.endsWith('.failed.log'))!;
  assert.match(await readFile(join(p.cacheHome, 'rum/images/layers', log), 'utf8'), /rum-layer: failed: apt-get install exited 100/);
  const key = log.replace(/\.failed\.log$/, '');
  assert.ok(!(await virsh(['list', '--all', '--name'])).includes(`rum-layer-${key}-`), 'no builder left');
});
