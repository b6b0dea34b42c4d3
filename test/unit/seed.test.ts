// The seed artifacts through the real CLI: cloud-init accepts rum's user-data, the ISO reads back
// with isoinfo, nothing rebuilds twice, and a change names exactly the field that made it stale.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { chown, mkdir, mkdtemp, readFile, rm, stat, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { fakeLibvirtd } from '../helpers/fake-libvirtd.js';
import { run, scratchProject } from '../helpers/rig.js';

const SPECIALS = `#!/bin/sh\n: "colon: # hash ' single \\" double { } [ ] & * ! | > % @ \`tick\`"\necho '  leading spaces' ü ✓\n---\n...\n`;
const base = {
  image: { base: 'debian-12' },
  provision: { packages: ['git'], system: SPECIALS, boot: 'echo boot: $(date)' },
  ssh: { authorized_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b'] },
};

test('user-data passes cloud-init schema; the ISO reads back exactly; a second build is a no-op', async (t) => {
  const p = await scratchProject(t, base);
  const first = await p.rumJson('build', 'seed-iso');
  assert.deepEqual(first.built.sort(), ['meta-data', 'seed-iso', 'ssh-keys', 'user-data']);

  const schema = await run('cloud-init', ['schema', '--config-file', p.vmFile('user-data')]);
  assert.match(schema, /Valid (cloud-config|schema)/);

  assert.match(await run('isoinfo', ['-d', '-i', p.vmFile('seed.iso')]), /Volume id: cidata/);
  const names = await run('isoinfo', ['-R', '-f', '-i', p.vmFile('seed.iso')]);
  assert.deepEqual(names.trim().split('\n').sort(), ['/meta-data', '/user-data']);
  for (const f of ['meta-data', 'user-data']) {
    const inIso = await run('isoinfo', ['-R', '-x', `/${f}`, '-i', p.vmFile('seed.iso')]);
    assert.equal(inIso, (await readFile(p.vmFile(f), 'utf8')).replace(/\n$/, ''));
  }
  assert.equal((await stat(p.vmFile('user-data'))).mode & 0o777, 0o600, 'user-data holds the private host key');
  assert.equal((await stat(p.vmFile('id_ed25519'))).mode & 0o777, 0o600);

  const second = await p.rumJson('build', 'seed-iso');
  assert.deepEqual(second.built, []);
});

test('config strings with YAML specials round-trip exactly into user-data', async (t) => {
  const p = await scratchProject(t, base);
  await p.rumJson('build', 'user-data');
  const doc = parse(await readFile(p.vmFile('user-data'), 'utf8'));
  const files = Object.fromEntries(doc.write_files.map((f: any) => [f.path, f.content]));
  assert.equal(files['/var/lib/rum/provision/system.sh'], SPECIALS);
  assert.equal(files['/var/lib/rum/provision/boot.sh'], 'echo boot: $(date)\n');
  assert.equal(doc.packages, undefined, 'packages are installed in the provisioned layer, not at first boot');
  const pub = (await readFile(p.vmFile('id_ed25519.pub'), 'utf8')).trim();
  assert.deepEqual(doc.users[0].ssh_authorized_keys, [pub, base.ssh.authorized_keys[0]]);
  assert.equal(doc.users[0].name, 'rum');
  assert.deepEqual(doc.ssh_genkeytypes, ['ed25519']);
  assert.equal(doc.ssh_keys.ed25519_public, (await readFile(p.vmFile('ssh_host_ed25519_key.pub'), 'utf8')).trim());
  // After sshd starts, cloud-init runs only what this document needs (the provision runner,
  // its final message); password logins are off from sshd's first start.
  assert.deepEqual(doc.cloud_config_modules, []);
  assert.deepEqual(doc.cloud_final_modules, ['scripts-per-boot', 'final-message']);
  assert.match(files['/etc/ssh/sshd_config.d/50-rum.conf'], /^PasswordAuthentication no$/m);
  assert.equal(files['/etc/default/locale'], 'LANG=C.UTF-8\n');
});

test('a change names the field; the seed is byte-identical when rebuilt from the same inputs', async (t) => {
  // A dry run of a claimed VM asks libvirt about its domain: a daemon of the test's own.
  const p = await scratchProject(t, { ...base, libvirt: { uri: (await fakeLibvirtd(t, 'no-domains')).uri } });
  await p.rumJson('build', 'seed-iso');
  const fresh = await p.rum('up', '--dry-run', '--json');
  const plan0 = JSON.parse(fresh.stdout);
  for (const id of ['ssh-keys', 'meta-data', 'user-data', 'seed-iso'])
    assert.equal(plan0.nodes.find((n: any) => n.id === id).state, 'fresh', id);
  assert.equal(fresh.code, plan0.changes ? 10 : 0, 'exit 10 exactly when something would change');

  // Packages are the layer's: the seed does not change with them.
  await p.editConfig((c) => c.provision.packages.push('curl'));
  const layered = await p.rumJson('up', '--dry-run');
  assert.equal(layered.nodes.find((n: any) => n.id === 'user-data').state, 'fresh');
  assert.equal(layered.nodes.find((n: any) => n.id === 'layer').state, 'stale');
  await p.editConfig((c) => c.provision.packages.pop());

  await p.editConfig((c) => (c.provision.boot = 'echo changed'));
  const plan = await p.rumJson('up', '--dry-run');
  const node = (id: string) => plan.nodes.find((n: any) => n.id === id);
  assert.deepEqual(node('user-data').reason, { type: 'input-changed', fields: ['provision.boot'] });
  assert.equal(node('meta-data').state, 'fresh');
  assert.equal(node('ssh-keys').state, 'fresh');
  assert.deepEqual(node('seed-iso').reason, { type: 'upstream-changed', nodes: ['user-data'] });

  const before = await readFile(p.vmFile('seed.iso'));
  await unlink(p.vmFile('seed.iso'));
  await p.editConfig((c) => (c.provision.boot = base.provision.boot));
  const res = await p.rumJson('build', 'seed-iso');
  assert.deepEqual(res.built, ['seed-iso']);
  assert.equal(res.outcomes['seed-iso'].type, 'cutoff', 'same inputs, same bytes');
  assert.deepEqual(await readFile(p.vmFile('seed.iso')), before);
});

test('--reset plans a new instance-id and a new seed, and keeps the keys', async (t) => {
  const p = await scratchProject(t, { ...base, libvirt: { uri: (await fakeLibvirtd(t, 'no-domains')).uri } });
  await p.rumJson('build', 'seed-iso');
  const plan = await p.rumJson('up', '--dry-run', '--reset');
  const node = (id: string) => plan.nodes.find((n: any) => n.id === id);
  assert.deepEqual(node('meta-data').reason, { type: 'input-changed', fields: ['instance-id'] });
  assert.deepEqual(node('seed-iso').reason, { type: 'reset' });
  assert.equal(node('ssh-keys').state, 'fresh');
});

test('a VM name used by another project is refused, naming both rum.yaml files', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'rum-owner-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const a = await scratchProject(t, { ...base, name: 'shared' }, { root, name: 'a' });
  const b = await scratchProject(t, { ...base, name: 'shared' }, { root, name: 'b' });
  assert.equal((await a.rum('build', 'ssh-keys')).code, 0);
  const r = await b.rum('build', 'ssh-keys');
  assert.equal(r.code, 7);
  assert.match(r.stderr, new RegExp(`${a.dir}/rum.yaml`));
  assert.match(r.stderr, new RegExp(`${b.dir}/rum.yaml`));
  assert.match(r.stderr, /hint: set a different `name:`/);
});

test('config errors: rum.yaml:line:col, the line, a hint, exit 2, no stack trace', async (t) => {
  const p = await scratchProject(t, 'image:\n  base: debian-12\nresources:\n  memroy: 2G\n  cpus: two\n');
  const r = await p.rum('up', '--dry-run');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /rum\.yaml:4:3/);
  assert.match(r.stderr, /memroy: 2G/);
  assert.match(r.stderr, /did you mean "memory"/);
  assert.match(r.stderr, /rum\.yaml:5:9/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

test('graph: text, dot, mermaid and json agree on the nodes', async (t) => {
  const p = await scratchProject(t, base);
  const g = await p.rumJson('graph');
  const ids = g.nodes.map((n: any) => n.id).sort();
  for (const n of g.nodes) assert.ok(['id', 'kind', 'deps', 'state', 'reason', 'output'].every((k) => k in n));
  const text = (await p.rum('graph')).stdout;
  const dot = (await p.rum('graph', '--format', 'dot')).stdout;
  const mermaid = (await p.rum('graph', '--format', 'mermaid')).stdout;
  for (const id of ids) {
    assert.match(text, new RegExp(`\\b${id} \\[`));
    assert.match(dot, new RegExp(`"${id}"`));
    assert.match(mermaid, new RegExp(id.replace(/-/g, '_')));
  }
  assert.equal((await p.rum('graph', '--format', 'png')).code, 2);
});

test('rum schema prints a JSON Schema with the top-level keys', async (t) => {
  const p = await scratchProject(t, base);
  const s = JSON.parse((await p.rum('schema')).stdout);
  assert.ok(['image', 'resources', 'network', 'ssh', 'mounts', 'provision', 'libvirt'].every((k) => k in s.properties));
});

test('mounts in user-data: fstab lines with nofail, rewritten by bootcmd at each cloud-init run, and argv mounts; cloud-init accepts it', async (t) => {
  const p = await scratchProject(t, { ...base, mounts: [{ source: '.', target: '/work' }, { source: '.', target: '/ro', readonly: true, type: '9p' }] });
  await p.rumJson('build', 'user-data');
  assert.match(await run('cloud-init', ['schema', '--config-file', p.vmFile('user-data')]), /Valid (cloud-config|schema)/);
  const doc = parse(await readFile(p.vmFile('user-data'), 'utf8'));
  assert.equal(doc.write_files.find((f: any) => f.path === '/etc/fstab'), undefined, 'not per instance: the lines follow the seed');
  const fstab = doc.bootcmd.find((c: string[]) => c[3] === 'rum-fstab');
  const lines = fstab[4].trim().split('\n').map((l: string) => l.split(' '));
  assert.deepEqual(lines.map((l: string[]) => l[0]), doc.bootcmd.filter((c: string[]) => c[3] === 'rum-mount').map((c: string[]) => c[7]));
  assert.deepEqual(lines.map((l: string[]) => l[1]), ['/work', '/ro']);
  assert.match(lines[1][3], /(^|,)ro(,|$)/);
  for (const l of lines) assert.match(l[3], /(^|,)nofail(,|$)/);
  for (const l of lines) assert.match(l[3], /x-systemd\.before=ssh\.service/, 'mounted before sshd on a warm boot');
  const mounts = doc.bootcmd.filter((c: string[]) => c[3] === 'rum-mount');
  assert.deepEqual(mounts.map((c: string[]) => c[4]), ['/work', '/ro'], 'argv form: the target is a word, not shell text');
  for (const c of mounts) assert.doesNotMatch(c[6], /x-systemd/, 'mount(8) gets only what the kernel reads');
});

test("the guest user's uid: as root, the project directory's owner; a share it cannot write is said once", async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root: chowns a project to another uid');
  const p = await scratchProject(t, { ...base, mounts: [{ source: './share', target: '/work', type: '9p' }] });
  await mkdir(join(p.dir, 'share'));
  // rum run by root in root's own directory: no ordinary owner, so the image's default user,
  // which cannot write into root's share: up says so, once.
  const asRoot = await p.rum('build', 'user-data');
  assert.equal(asRoot.code, 0, asRoot.stderr);
  assert.equal(parse(await readFile(p.vmFile('user-data'), 'utf8')).users[0].uid, 1000);
  const said = asRoot.stderr.split('\n').filter((l) => l.includes('cannot write'));
  assert.equal(said.length, 1, asRoot.stderr);
  assert.match(said[0]!, /mount \/work: .*\/share belongs to root, so the guest's user \(uid 1000\) cannot write to it; .*chown -R 1000 /);
  assert.equal((await p.rum('build', 'user-data')).stderr.includes('cannot write'), false, 'said once, not on every run');

  // `sudo rum up` in a user's checkout: the guest user is that user, and may write the share.
  await chown(p.dir, 4242, 4242);
  await chown(join(p.dir, 'share'), 4242, 4242);
  const asUser = await p.rum('build', 'user-data');
  assert.equal(asUser.code, 0, asUser.stderr);
  assert.equal(parse(await readFile(p.vmFile('user-data'), 'utf8')).users[0].uid, 4242);
  assert.doesNotMatch(asUser.stderr, /cannot write/);
});
