// machines: in rum.yaml: each machine inherits the top-level keys (mappings merged, lists
// replaced), is named <project>-<machine>, and every problem, in its own block or inherited, is
// reported once at the line that caused it. A file without machines: is one VM, as before.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { cachedProject, rememberProject } from '../../src/config/cache.js';
import { loadProject, parseProject } from '../../src/config/load.js';
import { jsonSchema, type Config, type Project } from '../../src/config/schema.js';
import { ConfigError, type Diagnostic } from '../../src/errors.js';
import { digestOf, initDigests } from '../../src/graph/digest.js';

const FILE = '/nonexistent/shop/rum.yaml'; // parsed from text: nothing is read from disk
const MiB = 2 ** 20;
const GiB = 2 ** 30;

const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

async function problemsIn(text: string, file = FILE): Promise<Diagnostic[]> {
  try {
    await parseProject(text, file, {});
  } catch (err) {
    if (err instanceof ConfigError) return err.diagnostics;
    throw err;
  }
  assert.fail('it loaded, but it should not');
}

/** The one diagnostic for `text`, as [line, col, message, hint]. */
async function onlyProblem(text: string): Promise<[number, number, string, string | undefined]> {
  const got = await problemsIn(text);
  assert.equal(got.length, 1, JSON.stringify(got.map((d) => `${d.line}:${d.col} ${d.message}`), null, 1));
  const d = got[0]!;
  assert.equal(d.source, text.split('\n')[d.line - 1], 'source is the offending line');
  return [d.line, d.col, d.message, d.hint];
}

const byName = (p: Project) => Object.fromEntries(p.machines.map((c) => [c.machine, c])) as Record<string, Config>;

function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'rum-machines-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const SHOP = yaml(
  'name: shop',
  'image: { base: debian-12 }',
  'resources: { memory: 512M }',
  'network: { mode: user }',
  'provision:',
  '  packages: [git, curl]',
  '  system: "echo hi"',
  'machines:',
  '  db:',
  '    resources: { cpus: 1 }',
  '  web:',
  '    after: [db]',
  '    ports: [{ host: 8080, guest: 80 }]',
  '    provision: { packages: [nginx] }',
  '    network: { hostname: www }',
);

test('machines inherit the top level: mappings merged key by key, lists replaced whole', async () => {
  const project = await parseProject(SHOP, FILE, {});
  assert.deepEqual([project.name, project.single, project.file, project.dir], ['shop', false, FILE, '/nonexistent/shop']);
  assert.deepEqual(project.machines.map((c) => c.machine), ['db', 'web'], 'file order');
  const { db, web } = byName(project);
  assert.deepEqual(db!.resources, { cpus: 1, memory: 512 * MiB, disk: 20 * GiB });
  assert.deepEqual(web!.resources, { cpus: 2, memory: 512 * MiB, disk: 20 * GiB });
  assert.deepEqual(db!.provision, { packages: ['git', 'curl'], system: 'echo hi' });
  assert.deepEqual(web!.provision, { packages: ['nginx'], system: 'echo hi' }, 'its list replaces; system is still inherited');
  assert.deepEqual([db!.ports, web!.ports], [[], [{ host: 8080, guest: 80, bind: '127.0.0.1', proto: 'tcp' }]]);
  assert.deepEqual([db!.after, web!.after], [[], ['db']]);
  assert.deepEqual(db!.network, { mode: 'user', name: 'default', hostname: 'db' });
  assert.deepEqual(web!.network, { mode: 'user', name: 'default', hostname: 'www' }, 'its own hostname wins');
  for (const c of project.machines) assert.deepEqual([c.file, c.dir], [FILE, '/nonexistent/shop']);
});

test('a machine list replaces the top-level one; mount sources resolve per machine', async (t) => {
  const dir = join(scratch(t), 'shop');
  mkdirSync(join(dir, 'src'), { recursive: true });
  mkdirSync(join(dir, 'data'));
  writeFileSync(join(dir, 'rum.yaml'), yaml(
    'image: { base: debian-12 }',
    'mounts: [{ source: ./src, target: /srv/src }]',
    'machines:',
    '  app: {}',
    '  store:',
    '    mounts: [{ source: ./data, target: /srv/data, readonly: true }]',
    '  bare:',
    '    mounts: []',
  ));
  const project = await loadProject({ cwd: dir });
  assert.equal(project.name, 'shop', 'the project is named after its directory, as before');
  const { app, store, bare } = byName(project);
  assert.deepEqual(app!.mounts.map((m) => [m.target, m.hostPath, m.readonly]), [['/srv/src', join(dir, 'src'), false]]);
  assert.deepEqual(store!.mounts.map((m) => [m.target, m.hostPath, m.readonly]), [['/srv/data', join(dir, 'data'), true]]);
  assert.deepEqual(bare!.mounts, []);
});

test('VM names are <project>-<machine>; hostnames the machine names; file order kept', async () => {
  const project = await parseProject(yaml('name: shop', 'image: {base: debian-12}', 'machines:', '  web:', '  "1":', '  db: {}'), FILE, {});
  assert.deepEqual(project.machines.map((c) => [c.machine, c.name, c.network.hostname]), [
    ['web', 'shop-web', 'web'],
    ['1', 'shop-1', '1'],
    ['db', 'shop-db', 'db'],
  ]);
});

test('a file without machines: is one VM exactly as before', async () => {
  const text = yaml('name: box', 'image: {base: debian-12}', 'resources: {memory: 1G}', 'ports: [{host: 2222, guest: 22}]');
  const project = await parseProject(text, FILE, {});
  assert.deepEqual([project.name, project.single, project.machines.length], ['box', true, 1]);
  assert.deepEqual(project.machines[0], {
    name: 'box',
    machine: 'box',
    after: [],
    image: { base: 'debian-12' },
    resources: { cpus: 2, memory: GiB, disk: 20 * GiB },
    network: { mode: 'nat', name: 'default', hostname: 'box' },
    ssh: { user: 'rum', authorized_keys: [] },
    mounts: [],
    ports: [{ host: 2222, guest: 22, bind: '127.0.0.1', proto: 'tcp' }],
    provision: { packages: [] },
    libvirt: { uri: 'qemu:///system', domain_type: 'auto', machine: 'q35' },
    file: FILE,
    dir: '/nonexistent/shop',
  });
  // The same settings as the one machine of a machines: file: only the names differ.
  const [solo] = (await parseProject(`${text}machines:\n  solo:\n`, FILE, {})).machines;
  assert.deepEqual(solo, { ...project.machines[0], name: 'box-solo', machine: 'solo', network: { ...solo!.network, hostname: 'solo' } });
  assert.equal(solo!.network.hostname, 'solo');
});

test('a bad value in a machine: at its line in the machine block', async () => {
  const text = yaml('image: {base: debian-12}', 'machines:', '  db:', '    resources:', '      cpus: 0', '  web: {}');
  const [line, col, message] = await onlyProblem(text);
  assert.deepEqual([line, col], [5, 13]);
  assert.match(message, /^resources\.cpus must be at least 1/);
  assert.doesNotMatch(message, /for machine/, 'not inherited: no machine to name');
});

test('a bad inherited value: once, at the top-level line, naming the machines it fails for', async () => {
  const both = yaml('image: {base: debian-12}', 'resources: {memory: 12}', 'machines:', '  db: {}', '  web: {}');
  const [line, col, message] = await onlyProblem(both);
  assert.deepEqual([line, col], [2, 21]);
  assert.match(message, /^resources\.memory must be .* \(for machines db and web\)$/);

  const one = yaml('image: {base: debian-12}', 'resources: {memory: 12}', 'machines:', '  db: {resources: {memory: 1G}}', '  web: {}');
  const [l2, c2, m2] = await onlyProblem(one);
  assert.deepEqual([l2, c2], [2, 21]);
  assert.match(m2, /\(for machine web\)$/, 'db sets its own');

  // A cross-field rule on inherited values: once too.
  const mounts = yaml('image: {base: debian-12}', 'mounts: [{source: /, target: /etc}]', 'machines:', '  a: {}', '  b: {}', '  c: {}');
  const got = (await problemsIn(mounts)).filter((d) => /would hide/.test(d.message));
  assert.deepEqual(got.map((d) => [d.line, d.col, d.message]), [[2, 30, "mount target /etc would hide the guest's own /etc (for machines a, b and c)"]]);

  // Without machines:, no machine is named.
  assert.doesNotMatch((await onlyProblem(yaml('image: {base: debian-12}', 'resources: {memory: 12}')))[2], /machine/);
});

test('an inherited value that fails only with a machine\'s own settings names that machine', async () => {
  const text = yaml('image: {base: debian-12}', 'network: {mode: nat}', 'machines:', '  db:', '    libvirt: {uri: "qemu:///session"}', '  web: {}');
  const [line, col, message] = await onlyProblem(text);
  assert.deepEqual([line, col], [2, 17]);
  assert.match(message, /^network\.mode nat needs a libvirt network.* \(for machine db\)$/);
});

test('unknown keys: in the machine block, or at the top level once', async () => {
  const [line, col, message, hint] = await onlyProblem(yaml('image: {base: debian-12}', 'machines:', '  db:', '    resources: {memroy: 1G}'));
  assert.deepEqual([line, col, message, hint], [4, 17, 'unknown key "memroy" in resources', 'did you mean "memory"?']);
  const top = await onlyProblem(yaml('image: {base: debian-12}', 'mount: []', 'machines:', '  db: {}', '  web: {}'));
  assert.deepEqual(top.slice(0, 3), [2, 1, 'unknown key "mount" (for machines db and web)']);
  const typo = await onlyProblem(yaml('image: {base: debian-12}', 'machines:', '  db: {afer: [x]}'));
  assert.deepEqual([typo[0], typo[1], typo[3]], [3, 8, 'did you mean "after"?']);
});

test('a missing image: at the machine key when neither it nor the top level has one', async () => {
  const got = await problemsIn(yaml('resources: {cpus: 1}', 'machines:', '  db:', '    image: {base: debian-12}', '  web: {}', '  api:'));
  assert.deepEqual(got.map((d) => [d.line, d.col, d.message]), [
    [5, 3, 'missing required key "image"'],
    [6, 3, 'missing required key "image"'],
  ]);
  assert.match(got[0]!.hint ?? '', /at the top level, for every machine, or in this machine/);
  // Part of it inherited: the missing key is the machine's, under its own image:.
  const part = await onlyProblem(yaml('machines:', '  db:', '    image: {checksum: "sha256:' + '0'.repeat(64) + '"}'));
  assert.deepEqual(part.slice(0, 3), [3, 5, 'missing required key "base" in image']);
});

test('after: names machines of this file, not itself, each once', async () => {
  const unknown = await onlyProblem(yaml('image: {base: debian-12}', 'machines:', '  db: {}', '  cache: {}', '  web: {after: [db, dbb]}'));
  assert.deepEqual(unknown.slice(0, 3), [5, 21, 'after names "dbb", which is not a machine of this file']);
  assert.equal(unknown[3], 'machines of this file: db, cache');

  const self = await onlyProblem(yaml('image: {base: debian-12}', 'machines:', '  web:', '    after:', '      - web'));
  assert.deepEqual(self.slice(0, 3), [5, 9, 'machine web cannot start after itself']);

  const twice = await onlyProblem(yaml('image: {base: debian-12}', 'machines:', '  db: {}', '  web: {after: [db, db]}'));
  assert.deepEqual(twice.slice(0, 3), [4, 21, 'db is already in after']);

  const notList = await onlyProblem(yaml('image: {base: debian-12}', 'machines:', '  db: {}', '  web: {after: db}'));
  assert.deepEqual(notList.slice(0, 3), [4, 16, 'after must be a list of machine names, not the string "db"']);
});

test('an after: cycle is refused at the entry that closes it, naming the cycle', async () => {
  const two = await onlyProblem(yaml('image: {base: debian-12}', 'machines:', '  web: {after: [db]}', '  db:', '    after: [web]'));
  assert.deepEqual(two.slice(0, 3), [5, 13, 'after: makes a cycle: db -> web -> db']);

  const three = await onlyProblem(yaml(
    'image: {base: debian-12}',
    'machines:',
    '  a: {after: [b]}',
    '  b: {after: [c]}',
    '  c: {after: [x, a]}',
    '  x: {}',
  ));
  assert.deepEqual(three.slice(0, 3), [5, 18, 'after: makes a cycle: c -> a -> b -> c']);

  // No cycle: a diamond.
  const diamond = yaml('image: {base: debian-12}', 'machines:', '  db: {}', '  cache: {after: [db]}', '  api: {after: [db, cache]}', '  web: {after: [api, cache]}');
  assert.deepEqual((await parseProject(diamond, FILE, {})).machines.map((c) => c.after), [[], ['db'], ['db', 'cache'], ['api', 'cache']]);
});

test('name: inside a machine, after: at the top level', async () => {
  const named = await onlyProblem(yaml('image: {base: debian-12}', 'machines:', '  web:', '    name: www'));
  assert.deepEqual(named.slice(0, 2), [4, 5]);
  assert.match(named[2], /its key under machines:, web, is its name/);

  const top = await onlyProblem(yaml('image: {base: debian-12}', 'after: [db]', 'machines:', '  db: {}'));
  assert.deepEqual(top.slice(0, 3), [2, 1, 'after: only makes sense inside a machine, under machines:']);
  const single = await onlyProblem(yaml('image: {base: debian-12}', 'after: [db]'));
  assert.deepEqual(single.slice(0, 2), [2, 1]);
  assert.match(single[3] ?? '', /declare machines:/);
});

test('machine names: DNS labels, and a VM name of at most 63 characters', async () => {
  const bad = await onlyProblem(yaml('image: {base: debian-12}', 'machines:', '  Web_1: {}'));
  assert.deepEqual(bad.slice(0, 2), [3, 3]);
  assert.match(bad[2], /machine name "Web_1" must be a DNS label/);

  const project = 'p'.repeat(40);
  const long = await onlyProblem(yaml(`name: ${project}`, 'image: {base: debian-12}', 'machines:', '  ok: {}', `  ${'m'.repeat(23)}: {}`));
  assert.deepEqual(long.slice(0, 2), [5, 3]);
  assert.match(long[2], /^VM name p{40}-m{23} is 64 characters: a DNS label holds at most 63$/);
  assert.deepEqual((await parseProject(yaml(`name: ${project}`, 'image: {base: debian-12}', 'machines:', `  ${'m'.repeat(22)}:`), FILE, {})).machines[0]!.name.length, 63);

  const badProject = await onlyProblem(yaml('name: Shop', 'image: {base: debian-12}', 'machines:', '  db: {}'));
  assert.deepEqual(badProject.slice(0, 2), [1, 7]);
  assert.match(badProject[2], /^name must be a DNS label/);
});

test('machines: must declare at least one machine, as a mapping', async () => {
  for (const empty of ['machines: {}', 'machines:']) {
    const got = await onlyProblem(yaml('image: {base: debian-12}', empty));
    assert.deepEqual(got.slice(0, 2), [2, 1], empty);
    assert.match(got[2], /declare at least one machine, or remove machines:/, empty);
  }
  const list = await onlyProblem(yaml('image: {base: debian-12}', 'machines: [db, web]'));
  assert.deepEqual(list.slice(0, 3), [2, 11, 'machines must be a mapping of machine names to their settings, not a list']);
  const scalar = await onlyProblem(yaml('image: {base: debian-12}', 'machines:', '  db: 3'));
  assert.deepEqual(scalar.slice(0, 3), [3, 7, 'machines.db must be a mapping of settings, not 3']);
});

test('every problem at once, sorted by line', async () => {
  const got = await problemsIn(yaml(
    'image: {base: debian-12}',
    'resources: {disk: 1M}',
    'machines:',
    '  db:',
    '    ssh: {user: root}',
    '  web:',
    '    after: [nope]',
  ));
  assert.deepEqual(got.map((d) => [d.line, d.col]), [[2, 19], [5, 17], [7, 13]]);
  assert.match(got[0]!.message, /\(for machines db and web\)$/);
});

test('two machines forwarding one host port: at the later one\'s line, naming the earlier', async () => {
  const own = await onlyProblem(yaml(
    'image: {base: debian-12}',
    'machines:',
    '  db:',
    '    ports: [{host: 8080, guest: 80}]',
    '  web:',
    '    ports:',
    '      - {host: 9000, guest: 9000}',
    '      - {host: 8080, guest: 8080}',
  ));
  assert.deepEqual(own.slice(0, 3), [8, 16, 'host port 127.0.0.1:8080/tcp is already forwarded by machine db (line 4)']);
  assert.match(own[3] ?? '', /forwarded by one machine: pick another host port/);

  // 0.0.0.0 takes the port on every address: as within one machine.
  const any = await onlyProblem(yaml('image: {base: debian-12}', 'machines:', '  db: {ports: [{host: 5432, guest: 5432}]}', '  web: {ports: [{host: 5432, guest: 80, bind: 0.0.0.0}]}'));
  assert.deepEqual(any.slice(0, 3), [4, 24, 'host port 5432/tcp on 0.0.0.0 is already forwarded by machine db (line 3)']);
});

test('a forwarded port inherited by several machines: once, at the top-level line', async () => {
  const all = await onlyProblem(yaml('image: {base: debian-12}', 'ports: [{host: 8080, guest: 80}]', 'machines:', '  a: {}', '  b: {}', '  c: {}'));
  assert.deepEqual(all.slice(0, 3), [2, 16, 'host port 127.0.0.1:8080/tcp would be forwarded by machines a, b and c, which inherit it from the top level']);

  // Inherited by some, and also a machine's own: at the inherited line, naming both sides.
  const mixed = await onlyProblem(yaml(
    'image: {base: debian-12}',
    'ports: [{host: 8080, guest: 80}]',
    'machines:',
    '  db: {ports: [{host: 8080, guest: 5432}]}',
    '  web: {}',
    '  api: {}',
  ));
  assert.deepEqual(mixed.slice(0, 3), [2, 16, 'host port 127.0.0.1:8080/tcp is already forwarded by machine db (line 4) (for machines web and api)']);

  // An own port against an inherited one earlier: at the own line.
  const later = await onlyProblem(yaml('image: {base: debian-12}', 'ports: [{host: 8080, guest: 80}]', 'machines:', '  web: {}', '  db: {ports: [{host: 8080, guest: 5432}]}'));
  assert.deepEqual(later.slice(0, 3), [5, 23, 'host port 127.0.0.1:8080/tcp is already forwarded by machine web (line 2)']);
});

test('one host port on different addresses or protocols, and one shared inotify mount, are fine', async () => {
  const project = await parseProject(yaml(
    'image: {base: debian-12}',
    'mounts: [{source: /, target: /srv/host, inotify: true}]',
    'machines:',
    '  a: {ports: [{host: 8080, guest: 80}]}',
    '  b: {ports: [{host: 8080, guest: 80, bind: 127.0.0.2}]}',
    '  c: {ports: [{host: 8080, guest: 80, proto: udp}]}',
    '  d: {ports: [{host: 8080, guest: 80, bind: 10.0.0.1, proto: udp}]}',
  ), FILE, {});
  assert.deepEqual(project.machines.map((c) => c.ports.map((p) => `${p.bind}:${p.host}/${p.proto}`)),
    [['127.0.0.1:8080/tcp'], ['127.0.0.2:8080/tcp'], ['127.0.0.1:8080/udp'], ['10.0.0.1:8080/udp']]);
  assert.ok(project.machines.every((c) => c.mounts[0]!.inotify && c.mounts[0]!.hostPath === '/'));
});

test('two machines with one hostname: at the one that sets it', async () => {
  const both = await onlyProblem(yaml('image: {base: debian-12}', 'machines:', '  web: {network: {hostname: www}}', '  api:', '    network: {hostname: www}'));
  assert.deepEqual(both.slice(0, 3), [5, 25, 'network.hostname www is also the hostname of machine web (line 3)']);
  assert.match(both[3] ?? '', /leave network.hostname out to use the machine's name/);

  // Another machine's name is its hostname.
  const name = await onlyProblem(yaml('image: {base: debian-12}', 'machines:', '  web: {network: {hostname: db}}', '  db: {}'));
  assert.deepEqual(name.slice(0, 3), [3, 29, 'network.hostname db is also the hostname of machine db (its name)']);

  const inherited = await onlyProblem(yaml('image: {base: debian-12}', 'network: {hostname: box}', 'machines:', '  a: {}', '  b: {}', '  c: {network: {hostname: c}}'));
  assert.deepEqual(inherited.slice(0, 3), [2, 21, 'network.hostname box would be the hostname of machines a and b, which inherit it from the top level']);

  // Without machines: there is one VM, and nothing to clash with.
  assert.equal((await parseProject(yaml('image: {base: debian-12}', 'network: {hostname: box}'), FILE, {})).machines[0]!.network.hostname, 'box');
});

test('rum schema describes machines: and after:', () => {
  const schema = JSON.parse(JSON.stringify(jsonSchema())) as { properties: Record<string, any> };
  const machines = schema.properties.machines;
  assert.equal(machines.type, 'object');
  assert.equal(machines.minProperties, 1);
  const machine = machines.additionalProperties.anyOf[0];
  assert.equal(machine.additionalProperties, false);
  assert.deepEqual(Object.keys(machine.properties).sort(), ['after', 'image', 'libvirt', 'mounts', 'network', 'ports', 'provision', 'resources', 'ssh']);
  assert.equal(machine.properties.after.type, 'array');
  assert.equal(machine.properties.image.required, undefined, 'image.base may be inherited');
  assert.deepEqual(machine.properties.mounts.items.required, ['source', 'target'], 'a mount is a whole value');
  assert.equal(machine.properties.name, undefined);
});

test('the config cache holds the whole project and re-checks every machine\'s mount sources', async (t) => {
  const root = scratch(t);
  const dir = join(root, 'shop');
  mkdirSync(join(dir, 'a'), { recursive: true });
  mkdirSync(join(dir, 'b'));
  const text = yaml('image: {base: debian-12}', 'machines:', '  a: {mounts: [{source: ./a, target: /srv/a}]}', '  b: {mounts: [{source: ./b, target: /srv/b}]}');
  const file = join(dir, 'rum.yaml');
  writeFileSync(file, text);
  const env = { XDG_CACHE_HOME: join(root, 'cache'), HOME: root };
  await initDigests();
  const project = await loadProject({ file, env });
  assert.equal(await cachedProject(file, text, env), undefined);
  await rememberProject(file, text, env, project);
  assert.deepEqual(await cachedProject(file, text, env), project);
  assert.equal(await cachedProject(file, `${text}# changed\n`, env), undefined);
  rmSync(join(dir, 'b'), { recursive: true });
  assert.equal(await cachedProject(file, text, env), undefined, 'the second machine\'s source is gone');
  // For a command that mounts nothing (destroy, down, status) a missing source is no error.
  assert.deepEqual(await cachedProject(file, text, env, { mountSources: false }), project);
  await assert.rejects(parseProject(text, file, env), (e: ConfigError) => e.diagnostics.some((d) => /mount source "\.\/b" does not exist/.test(d.message)));
  const lenient = await parseProject(text, file, env, { mountSources: false });
  assert.equal(lenient.machines[1]!.mounts[0]!.hostPath, join(dir, 'b'));
});

test('a cache entry from before machines (a Config) is never read as a Project', async (t) => {
  const root = scratch(t);
  const file = join(root, 'shop', 'rum.yaml');
  const text = yaml('image: {base: debian-12}');
  const env = { XDG_CACHE_HOME: join(root, 'cache'), HOME: root };
  await initDigests();
  const project = await parseProject(text, file, env);
  await rememberProject(file, text, env, project);
  const [entryFile] = readdirSync(join(root, 'cache', 'rum', 'config'));
  const path = join(root, 'cache', 'rum', 'config', entryFile!);
  // The key the code before machines made (in a build without RUM_VERSION), over a Config.
  const oldKey = digestOf(JSON.stringify(['dev', file, env.HOME, '', text]));
  writeFileSync(path, JSON.stringify({ key: oldKey, config: project.machines[0] }));
  assert.equal(await cachedProject(file, text, env), undefined);
});
