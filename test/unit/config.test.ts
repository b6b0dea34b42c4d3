// rum.yaml loading: the broken corpus gives exactly the diagnostics its sidecar lists, valid files
// give the documented defaults, special strings survive, and diagnostics print as a frame.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import { parse } from 'yaml';
import { formatDiagnostic } from '../../src/config/frame.js';
import { findConfig, loadProject, parseProject, vmNameFromDir } from '../../src/config/load.js';
import { jsonSchema, MAX_PORTS, RumYamlSchema, type Config } from '../../src/config/schema.js';
import { ConfigError, RumError, type Diagnostic } from '../../src/errors.js';
import { resolveShorthand } from '../../src/image/shorthands.js';
import { tally } from '../helpers/tally.js';

// Fixtures are read from the source tree: dist/test/unit -> repo root.
const fixtures = fileURLToPath(new URL('../../../fixtures/config/', import.meta.url));
const broken = join(fixtures, 'broken');
const valid = join(fixtures, 'valid');

interface Expected {
  line: number;
  col: number;
  length?: number;
  message: string; // a substring of the message
  hint?: string; // a substring of the hint
}

/** The one VM of a file without machines:. */
async function loadConfig(opts: Parameters<typeof loadProject>[0]): Promise<Config> {
  const project = await loadProject(opts);
  assert.equal(project.single, true);
  assert.equal(project.machines.length, 1);
  assert.equal(project.machines[0]!.name, project.name);
  return project.machines[0]!;
}

async function diagnosticsOf(opts: { file?: string; cwd?: string }): Promise<Diagnostic[]> {
  try {
    await loadProject(opts);
  } catch (err) {
    if (err instanceof ConfigError) return err.diagnostics;
    throw err;
  }
  assert.fail(`${opts.file ?? opts.cwd} loaded, but it should not`);
}

function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'rum-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A project directory `name` inside a scratch directory, holding rum.yaml. */
function project(t: TestContext, text: string, name = 'proj'): string {
  const dir = join(scratch(t), name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'rum.yaml'), text);
  return dir;
}

const GiB = 2 ** 30;

test('the broken corpus: every fixture gives exactly the diagnostics its sidecar lists', async (t) => {
  const files = readdirSync(broken).filter((f) => f.endsWith('.yaml')).sort();
  const sidecars = readdirSync(broken).filter((f) => f.endsWith('.expected.json')).sort();
  assert.ok(files.length >= 20, `only ${files.length} broken fixtures`);
  assert.deepEqual(sidecars, files.map((f) => f.replace(/\.yaml$/, '.expected.json')), 'one sidecar per fixture, and no orphans');

  let held = 0;
  t.after(() => tally('input', 'broken rum.yaml fixtures, each refused at its line', files.length, held));
  for (const name of files) {
    await t.test(name, async () => {
      const file = join(broken, name);
      const expected = JSON.parse(readFileSync(file.replace(/\.yaml$/, '.expected.json'), 'utf8')) as Expected[];
      const lines = readFileSync(file, 'utf8').split('\n');
      const got = await diagnosticsOf({ file });
      const shown = JSON.stringify(got.map(({ line, col, message }) => ({ line, col, message })), null, 1);
      assert.equal(got.length, expected.length, `diagnostics:\n${shown}`);
      expected.forEach((want, i) => {
        const d = got[i]!;
        assert.equal(d.file, file);
        assert.deepEqual([d.line, d.col], [want.line, want.col], `position of "${want.message}"`);
        if (want.length !== undefined) assert.equal(d.length, want.length, `caret length of "${want.message}"`);
        assert.ok(d.message.includes(want.message), `message ${JSON.stringify(d.message)} lacks ${JSON.stringify(want.message)}`);
        if (want.hint !== undefined) assert.ok(d.hint?.includes(want.hint), `hint ${JSON.stringify(d.hint)} lacks ${JSON.stringify(want.hint)}`);
        assert.equal(d.source, lines[d.line - 1], 'source is the offending line');
      });
      held++;
    });
  }
});

test('ConfigError counts its problems', async () => {
  const file = join(broken, 'multiple-problems.yaml');
  await assert.rejects(loadProject({ file }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.code, 'CONFIG_INVALID');
    assert.equal(err.message, 'rum.yaml has 11 problems');
    return true;
  });
});

test('minimal rum.yaml: every default, name from the directory', async () => {
  const file = join(valid, 'minimal.yaml');
  assert.deepEqual(await loadConfig({ file }), {
    name: 'valid',
    machine: 'valid',
    after: [],
    image: { base: 'debian-12' },
    resources: { cpus: 2, memory: 2 * GiB, disk: 20 * GiB },
    network: { mode: 'nat', name: 'default', hostname: 'valid' },
    ssh: { user: 'rum', authorized_keys: [] },
    mounts: [],
    ports: [],
    provision: { packages: [] },
    libvirt: { uri: 'qemu:///system', domain_type: 'auto', machine: 'q35' },
    file,
    dir: valid,
  });
});

test('full rum.yaml: every field as written, relative sources resolved against rum.yaml', async () => {
  const file = join(valid, 'full.yaml');
  const config = await loadConfig({ file, cwd: tmpdir() });
  assert.deepEqual(config, {
    name: 'full-example',
    machine: 'full-example',
    after: [],
    image: {
      base: 'https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2',
      checksum: 'sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
      mirror: 'https://mirror.example.org/debian-cloud',
    },
    resources: { cpus: 4, memory: 4 * GiB, disk: 40 * GiB },
    network: { mode: 'user', name: 'rum-net', hostname: 'full-host' },
    ssh: {
      user: 'dev',
      authorized_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEIDxYdJCsyOUBHTlVcY2pxeH+GjZSboqmwt77FzNPa dev@laptop'],
    },
    mounts: [
      {
        source: '.',
        target: '/home/dev/src',
        readonly: true,
        type: '9p',
        inotify: true,
        ignore: ['node_modules/', '*.log'],
        hostPath: valid,
      },
      { source: '../broken', target: '/srv/broken', readonly: false, type: 'auto', inotify: false, ignore: [], hostPath: broken },
    ],
    ports: [
      { host: 8080, guest: 80, bind: '0.0.0.0', proto: 'udp' },
      { host: 8443, guest: 443, bind: '127.0.0.1', proto: 'tcp' },
    ],
    provision: {
      packages: ['git', 'build-essential', 'postgresql-15=15.5-0+deb12u1'],
      apt_sources: [
        'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example.org/debian bookworm main contrib',
      ],
      image: 'systemctl enable postgresql\n',
      system: 'apt-get -y upgrade\n',
      boot: 'echo booted > /run/rum-booted\n',
    },
    libvirt: { uri: 'qemu:///session', domain_type: 'qemu', machine: 'pc-q35-8.2' },
    file,
    dir: valid,
  });
});

test('full rum.yaml sets every key the schema knows (add new fields to it)', () => {
  const written = parse(readFileSync(join(valid, 'full.yaml'), 'utf8')) as unknown;
  const missing = schemaKeys(RumYamlSchema).filter((path) => !hasPath(written, path.split('.')));
  assert.deepEqual(missing, []);
});

test('YAML special characters round-trip exactly', async () => {
  const config = await loadConfig({ file: join(valid, 'special-strings.yaml') });
  assert.equal(config.image.base, "./images/débian #1: 'test'.qcow2");
  assert.equal(config.ssh.user, '_build-bot');
  assert.deepEqual(config.provision.packages, ['libc6=2.36-9+deb12u4', 'g++', 'python3.11']);
  assert.equal(
    config.provision.system,
    [
      '#!/bin/sh',
      `# a comment: with "quotes" and 'single' ones`,
      'echo "key: value # not a comment" > /etc/motd',
      `printf '%s\\n' '{ "json": [1, 2, {"a": null}] }' | tee -a /tmp/x`,
      '[ -d /srv ] && echo ok || echo no',
      'cmd & wait; echo *.log !bang |pipe >redirect 100% @home `date` $(id -u)',
      `echo 'tab\tinside' "\u00fcn\u00efc\u00f6d\u00e9 \u2713 \u65e5\u672c\u8a9e \u{1f680}"`,
      '  more indented lines keep their spaces',
      'back\\slash \\n is no escape here',
      '',
    ].join('\n'),
  );
  assert.equal(config.provision.boot, '   three leading spaces\n-- and a line: with # and ---\n');
  assert.equal(config.mounts[0]!.target, '/srv/a@b+c');
  assert.deepEqual(config.mounts[0]!.ignore, [
    '*.log',
    '!keep.log',
    '#emacs#',
    '[abc]',
    '{x,y}',
    '&anchor-looking',
    '*alias-looking',
    '%percent',
    '@at',
    '`tick`',
    '|pipe',
    '>gt',
    "it's",
    'yes',
    'null',
    '~',
    '0x10',
    '1e3',
    ' leading space',
    ': colon',
    '- dash',
    '? question',
    'foo#bar',
    'a:b',
    'tab\there "q" \u00e9 A back\\slash',
    'folded into one line',
  ]);
});

test('session URI: network.mode defaults to user; hostname defaults to the name', async (t) => {
  const dir = project(t, 'image: {base: debian-12}\nlibvirt: {uri: "qemu:///session"}\n');
  const config = await loadConfig({ cwd: dir });
  assert.deepEqual(config.network, { mode: 'user', name: 'default', hostname: 'proj' });

  const named = project(t, 'name: box\nimage: {base: debian-12}\nnetwork: {hostname: dev-box}\n');
  const c2 = await loadConfig({ cwd: named });
  assert.deepEqual([c2.name, c2.network.mode, c2.network.hostname], ['box', 'nat', 'dev-box']);
});

test('the default name is the directory name as a DNS label', async (t) => {
  assert.equal(vmNameFromDir('My Café_Project!'), 'my-cafe-project');
  assert.equal(vmNameFromDir('--web--app--'), 'web-app');
  assert.equal(vmNameFromDir('a'.repeat(62) + '-b'), 'a'.repeat(62), 'cut at 63, no trailing -');
  assert.equal(vmNameFromDir('___'), undefined);
  assert.equal(vmNameFromDir(''), undefined);

  const dir = project(t, 'image: {base: debian-12}\n', 'My Café_Project!');
  assert.equal((await loadConfig({ cwd: dir })).name, 'my-cafe-project');

  const unusable = project(t, 'image: {base: debian-12}\n', '___');
  const [d, ...rest] = await diagnosticsOf({ cwd: unusable });
  assert.deepEqual(rest, []);
  assert.match(d!.message, /directory name "___" gives no usable VM name/);
  assert.match(d!.hint!, /name:/);
  assert.equal(d!.source, undefined, 'not about any line of the file');
});

test('mount sources: relative to rum.yaml (not the cwd), ~ is the home directory', async (t) => {
  const dir = project(t, 'image: {base: debian-12}\nmounts:\n  - {source: ./src, target: /srv/src}\n  - {source: ~/data, target: /srv/data}\n');
  mkdirSync(join(dir, 'src'));
  const home = scratch(t);
  mkdirSync(join(home, 'data'));
  const config = await loadConfig({ file: join(dir, 'rum.yaml'), cwd: tmpdir(), env: { HOME: home } });
  assert.deepEqual(config.mounts.map((m) => m.hostPath), [join(dir, 'src'), join(home, 'data')]);
});

test('findConfig walks up to the nearest rum.yaml', (t) => {
  const root = scratch(t);
  const deep = join(root, 'a', 'b', 'c');
  mkdirSync(deep, { recursive: true });
  writeFileSync(join(root, 'a', 'rum.yaml'), 'image: {base: debian-12}\n');
  assert.equal(findConfig(deep), join(root, 'a', 'rum.yaml'));
  writeFileSync(join(root, 'a', 'b', 'rum.yaml'), 'image: {base: debian-12}\n');
  assert.equal(findConfig(deep), join(root, 'a', 'b', 'rum.yaml'), 'the nearest wins');
  mkdirSync(join(deep, 'rum.yaml')); // a directory of that name is not a config
  assert.equal(findConfig(deep), join(root, 'a', 'b', 'rum.yaml'));

  assert.throws(
    () => findConfig(root),
    (err: unknown) => err instanceof RumError && err.code === 'CONFIG_INVALID' && /rum init/.test(err.hint!) && /-c PATH/.test(err.hint!),
  );
});

test('-c: a file, or a directory holding rum.yaml; a missing one is a clear error', async (t) => {
  const dir = project(t, 'image: {base: debian-12}\n');
  assert.equal((await loadConfig({ file: dir })).file, join(dir, 'rum.yaml'));
  assert.equal((await loadConfig({ file: 'proj/rum.yaml', cwd: join(dir, '..') })).dir, dir);
  await assert.rejects(loadProject({ file: join(dir, 'nope.yaml') }), (err: unknown) => {
    assert.ok(err instanceof RumError && !(err instanceof ConfigError));
    assert.equal(err.code, 'CONFIG_INVALID');
    assert.match(err.message, /nope\.yaml does not exist/);
    return true;
  });
});

test('a byte order mark and CRLF line endings are fine; no \\r in the source shown', async (t) => {
  const ok = project(t, '\ufeffimage:\r\n  base: debian-12\r\nresources:\r\n  cpus: 3\r\n');
  assert.equal((await loadConfig({ cwd: ok })).resources.cpus, 3);
  const bad = project(t, 'image:\r\n  base: debian-12\r\nresources:\r\n  cpu: 3\r\n');
  const [d] = await diagnosticsOf({ cwd: bad });
  assert.deepEqual([d!.line, d!.col, d!.source, d!.hint], [4, 3, '  cpu: 3', 'did you mean "cpus"?']);
});

test('an empty rum.yaml says so', async (t) => {
  for (const text of ['', '# nothing yet\n']) {
    const [d, ...rest] = await diagnosticsOf({ cwd: project(t, text) });
    assert.deepEqual(rest, []);
    assert.deepEqual([d!.line, d!.col, d!.message], [1, 1, 'rum.yaml is empty']);
  }
});

test('formatDiagnostic: location relative to the cwd, the line, a caret as long as the token, the hint', () => {
  const d: Diagnostic = {
    file: '/home/me/proj/rum.yaml',
    line: 7,
    col: 3,
    length: 6,
    message: 'unknown key "memroy" in resources',
    hint: 'did you mean "memory"?',
    source: '  memroy: 2G',
  };
  const expected = [
    'rum.yaml:7:3: unknown key "memroy" in resources',
    '   7 |   memroy: 2G',
    '     |   ^^^^^^',
    'hint: did you mean "memory"?',
  ].join('\n');
  assert.equal(formatDiagnostic(d, { color: false, cwd: '/home/me/proj' }), expected);
  assert.equal(
    formatDiagnostic(d, { color: false, cwd: '/elsewhere' }).split('\n')[0],
    '/home/me/proj/rum.yaml:7:3: unknown key "memroy" in resources',
  );
  const colored = formatDiagnostic(d, { color: true, cwd: '/home/me/proj' });
  assert.match(colored, /\x1b\[/);
  assert.equal(colored.replace(/\x1b\[\d+m/g, ''), expected, 'color changes nothing but color');
});

test('formatDiagnostic: wide line numbers, tabs, wide characters, no caret past the token, control characters', () => {
  const base = { file: '/p/rum.yaml', message: 'm' };
  assert.equal(
    formatDiagnostic({ ...base, line: 12345, col: 1, source: 'x: 1' }, { color: false, cwd: '/p' }),
    'rum.yaml:12345:1: m\n12345 | x: 1\n      | ^',
  );
  // A tab before the token is copied into the caret line, so they line up at any tab width.
  assert.equal(
    formatDiagnostic({ ...base, line: 2, col: 2, length: 4, source: '\tcpus: 2' }, { color: false, cwd: '/p' }).split('\n')[2],
    '     | \t^^^^',
  );
  // 日本 takes four terminal cells: the caret under x sits after 3 + 4 + 1 of them.
  assert.equal(
    formatDiagnostic({ ...base, line: 1, col: 7, length: 1, source: 'a: 日本 x' }, { color: false, cwd: '/p' }).split('\n')[2],
    `     | ${' '.repeat(8)}^`,
  );
  assert.equal(
    formatDiagnostic({ ...base, line: 1, col: 4, length: 99, source: 'a: bc' }, { color: false, cwd: '/p' }).split('\n')[2],
    '     |    ^^',
  );
  const hostile = formatDiagnostic({ ...base, line: 1, col: 1, source: 'a: \x1b[31mred\r' }, { color: false, cwd: '/p' });
  assert.ok(!/[\x1b\r]/.test(hostile), 'no escape sequences from the file reach the terminal');
  const breaks = formatDiagnostic({ ...base, line: 1, col: 8, length: 2, source: '- deb x\u0085y\u2028z' }, { color: false, cwd: '/p' });
  assert.deepEqual(breaks.split('\n').slice(1), ['   1 | - deb x\ufffdy\ufffdz', '     |        ^^'], 'NEL and U+2028 shown, not obeyed');
  assert.equal(formatDiagnostic({ ...base, line: 1, col: 1, hint: 'h' }, { color: false, cwd: '/p' }), 'rum.yaml:1:1: m\nhint: h');
});

test('jsonSchema() is JSON, closed, and lists every top-level key', () => {
  const schema = JSON.parse(JSON.stringify(jsonSchema())) as {
    type: string; properties: Record<string, any>; required?: string[]; anyOf: unknown; additionalProperties: boolean;
  };
  assert.equal(schema.type, 'object');
  assert.deepEqual(Object.keys(schema.properties).sort(), [...Object.keys(RumYamlSchema.shape), 'machines'].sort());
  assert.deepEqual(
    Object.keys(schema.properties).sort(),
    ['image', 'libvirt', 'machines', 'mounts', 'name', 'network', 'ports', 'provision', 'resources', 'ssh'],
  );
  assert.equal(schema.required, undefined, 'with machines:, image may be set per machine');
  assert.deepEqual(schema.anyOf, [{ required: ['image'] }, { required: ['machines'] }]);
  assert.equal(schema.additionalProperties, false);
});

/** The diagnostics for rum.yaml text; none when it loads. Not read from disk: mount sources need not exist. */
async function problemsIn(text: string): Promise<Diagnostic[]> {
  try {
    await parseProject(text, '/nonexistent/proj/rum.yaml', {});
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.diagnostics;
    throw err;
  }
}

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEIDxYdJCsyOUBHTlVcY2pxeH+GjZSboqmwt77FzNPa dev@laptop';

test('every one-line string refuses control characters and what YAML 1.1 reads as a line break, at its line', async () => {
  // Each string the schema knows: a rum.yaml holding a good value for it, where V stands.
  const fields: Record<string, { text: string; good: string }> = {
    name: { text: 'name: V\nimage: {base: debian-12}', good: 'box' },
    'image.base': { text: 'image:\n  base: V', good: './images/x.qcow2' },
    'image.checksum': { text: 'image:\n  base: debian-12\n  checksum: V', good: `sha256:${'0'.repeat(64)}` },
    'image.mirror': { text: 'image:\n  base: debian-12\n  mirror: V', good: 'https://mirror.example/cloud/' },
    'resources.memory': { text: 'image: {base: debian-12}\nresources:\n  memory: V', good: '2G' },
    'resources.disk': { text: 'image: {base: debian-12}\nresources:\n  disk: V', good: '20G' },
    'network.mode': { text: 'image: {base: debian-12}\nnetwork:\n  mode: V', good: 'user' },
    'network.name': { text: 'image: {base: debian-12}\nnetwork:\n  name: V', good: 'default' },
    'network.hostname': { text: 'image: {base: debian-12}\nnetwork:\n  hostname: V', good: 'box' },
    'ssh.user': { text: 'image: {base: debian-12}\nssh:\n  user: V', good: 'dev' },
    'ssh.authorized_keys': { text: 'image: {base: debian-12}\nssh:\n  authorized_keys:\n    - V', good: KEY },
    'mounts.source': { text: 'image: {base: debian-12}\nmounts:\n  - target: /srv/x\n    source: V', good: '/tmp' },
    'mounts.target': { text: 'image: {base: debian-12}\nmounts:\n  - source: /tmp\n    target: V', good: '/srv/x' },
    'mounts.type': { text: 'image: {base: debian-12}\nmounts:\n  - source: /tmp\n    target: /srv/x\n    type: V', good: '9p' },
    'ports.bind': { text: 'image: {base: debian-12}\nports:\n  - host: 8080\n    guest: 80\n    bind: V', good: '127.0.0.1' },
    'ports.proto': { text: 'image: {base: debian-12}\nports:\n  - host: 8080\n    guest: 80\n    proto: V', good: 'udp' },
    'provision.packages': { text: 'image: {base: debian-12}\nprovision:\n  packages:\n    - V', good: 'git' },
    'provision.apt_sources': { text: 'image: {base: debian-12}\nprovision:\n  apt_sources:\n    - V', good: 'deb http://deb.example/debian bookworm main' },
    'libvirt.uri': { text: 'image: {base: debian-12}\nlibvirt:\n  uri: V', good: 'qemu:///session' },
    'libvirt.domain_type': { text: 'image: {base: debian-12}\nlibvirt:\n  domain_type: V', good: 'qemu' },
    'libvirt.machine': { text: 'image: {base: debian-12}\nlibvirt:\n  machine: V', good: 'q35' },
  };
  // Many lines by nature (scripts), or matched on the host against names that may hold anything.
  const exempt = ['provision.image', 'provision.system', 'provision.boot', 'mounts.ignore'];
  const choices = ['network.mode', 'mounts.type', 'ports.proto', 'libvirt.domain_type', 'ports.bind']; // checked by zod's own enum or format
  assert.deepEqual(stringKeys(RumYamlSchema).sort(), [...Object.keys(fields), ...exempt].sort(), 'a new string field needs a line here');

  const bad = ['\0', '\t', '\n', '\r', '\x1b', '\x7f', '\x80', '\x85', '\x9f', '\u2028', '\u2029', '\ufeff'];
  for (const [path, { text, good }] of Object.entries(fields)) {
    const line = text.split('\n').findIndex((l) => l.includes('V')) + 1;
    assert.deepEqual(await problemsIn(text.replace('V', JSON.stringify(good))), [], `${path}: ${good} is fine`);
    for (const ch of bad) {
      const value = good.slice(0, 1) + ch + good.slice(1); // where a quick look would miss it
      const got = await problemsIn(text.replace('V', JSON.stringify(value)));
      const what = `${path} with U+${ch.charCodeAt(0).toString(16).padStart(4, '0')}`;
      assert.equal(got.length, 1, `${what}: ${JSON.stringify(got.map((d) => d.message))}`);
      assert.equal(got[0]!.line, line, what);
      if (!choices.includes(path)) {
        assert.match(got[0]!.message, /must be one line: it holds U\+[0-9A-F]{4} \(/, what);
        assert.match(got[0]!.hint ?? '', /one line of printable text/, what);
      }
    }
  }
});

test('image.mirror: an http(s) base URL every reader sees alike; a password is never repeated', async () => {
  const refused: [string, RegExp][] = [
    ['https://builder:hunter2@mirror.example/cloud/', /may not carry a user name or password/],
    ['https://hunter2@mirror.example/cloud/', /may not carry a user name or password/],
    ['https://:hunter2@mirror.example/cloud/', /may not carry a user name or password/],
    ['https://@mirror.example/cloud/', /may not carry a user name or password/],
    ['https://mirror.example/cloud/?', /may not have a query \(\?\) or a fragment/], // URL.search is '' here
    ['https://mirror.example/cloud?arch=amd64', /query/],
    ['https://mirror.example/cloud/#', /fragment/],
    ['ftp://mirror.example/cloud/', /must be an http\(s\) URL/],
    ['mirror.example/cloud', /must be an http\(s\) URL/],
    ['', /must be an http\(s\) URL/],
    ['HTTPS://mirror.example/cloud/', /lowercase and with two slashes/],
    ['https:/mirror.example/cloud/', /lowercase and with two slashes/],
    ['http:///mirror.example/cloud/', /needs a host right after the \/\//], // WHATWG: host "mirror.example"
    ['https://mirror.example:99999/', /not a valid URL/],
    ['https://mirror example/', /may not contain a space/],
    ['https://mirror.example\\cloud/', /backslash/],
    ['https://good.example\n.evil.example/', /must be one line/], // WHATWG drops it: good.example.evil.example
    ['https://good.example\t.evil.example/', /must be one line/],
    ['https://good.example/\u2028', /must be one line/],
  ];
  for (const [mirror, why] of refused) {
    const got = await problemsIn(`image:\n  base: debian-12\n  mirror: ${JSON.stringify(mirror)}\n`);
    assert.equal(got.length, 1, `${JSON.stringify(mirror)}: ${JSON.stringify(got)}`);
    assert.deepEqual([got[0]!.line, got[0]!.col], [3, 11], mirror);
    assert.match(got[0]!.message, why, mirror);
    assert.ok(got[0]!.hint, `${mirror}: a hint`);
    assert.ok(!`${got[0]!.message} ${got[0]!.hint}`.includes('hunter2'), `${mirror}: the password is repeated`);
  }
  for (const mirror of ['https://mirror.example/debian-cloud', 'http://10.0.0.5:8080/cloud/', 'http://[::1]/c/', 'https://mirror.example/a@b/']) {
    assert.deepEqual(await problemsIn(`image:\n  base: debian-12\n  mirror: ${JSON.stringify(mirror)}\n`), [], mirror);
    // What the shorthands make of it: the image under the mirror, as written.
    assert.ok(resolveShorthand('debian-12', mirror).url.startsWith(mirror.replace(/\/?$/, '/')), mirror);
  }
});

test('image.base: a scheme is http(s) with a host, or refused with what to write instead', async () => {
  const refused: [string, RegExp, RegExp][] = [
    ['file:///var/lib/images/x.qcow2', /file: URLs are not supported/, /image\.base: \/var\/lib\/images\/x\.qcow2$/],
    ['file://host/x.qcow2', /file: URLs are not supported/, /write the path itself/],
    ['file:x.qcow2', /file: URLs are not supported/, /write the path itself/],
    ['ftp://images.example/x.qcow2', /ftp: URLs are not supported/, /needs \.\/ in front/],
    ['ssh://images.example/x.qcow2', /ssh: URLs are not supported/, /http\(s\) URL/],
    ['data:,x', /data: URLs are not supported/, /http\(s\) URL/],
    ['images:x.qcow2', /images: URLs are not supported/, /needs \.\/ in front/],
    ['http://', /needs a host/, /https:\/\//],
    ['http:///images/x.qcow2', /needs a host/, /https:\/\//],
    ['https:images.example/x.qcow2', /lowercase and with two slashes/, /https:\/\//],
    ['HTTPS://images.example/x.qcow2', /lowercase and with two slashes/, /https:\/\//], // base-image would take it for a path
    ['https://images.example\\x.qcow2', /backslash/, /%5C/],
    ['https://images.example/a b.qcow2', /space/, /%20/],
    ['https://images.example:0x50/x.qcow2', /not a valid URL/, /https:\/\//],
  ];
  for (const [base, why, hint] of refused) {
    const got = await problemsIn(`image:\n  base: ${JSON.stringify(base)}\n`);
    assert.equal(got.length, 1, `${base}: ${JSON.stringify(got)}`);
    assert.deepEqual([got[0]!.line, got[0]!.col], [2, 9], base);
    assert.match(got[0]!.message, why, base);
    assert.match(got[0]!.hint ?? '', hint, base);
  }
  for (const base of ['debian-12', './images/x.qcow2', '/srv/images/x.img', 'images/a:b.qcow2', './a:b.qcow2', 'x.raw',
    'https://images.example/x.qcow2?X-Amz-Signature=abc', 'http://images.example:8080/x.img#f', "./images/débian #1: 'test'.qcow2"])
    assert.deepEqual(await problemsIn(`image:\n  base: ${JSON.stringify(base)}\n`), [], base);
});

test(`ports: up to ${MAX_PORTS}, so user networking always has an SSH port to pick besides them`, async () => {
  const ports = (n: number) => Array.from({ length: n }, (_, i) => `  - {host: ${20000 + i}, guest: 80}`).join('\n');
  assert.deepEqual(await problemsIn(`image: {base: debian-12}\nnetwork: {mode: user}\nports:\n${ports(MAX_PORTS)}\n`), []);
  const [d, ...rest] = await problemsIn(`image: {base: debian-12}\nnetwork: {mode: user}\nports:\n${ports(MAX_PORTS + 1)}\n`);
  assert.deepEqual(rest, []);
  assert.deepEqual([d!.line, d!.col, d!.message], [4, 3, `ports may forward at most ${MAX_PORTS} ports`]);
  assert.equal((jsonSchema() as { properties: { ports: { maxItems?: number } } }).properties.ports.maxItems, MAX_PORTS);
});

// ---------------------------------------------------------------------------------------------

type Def = { type: string; innerType?: Zod; in?: Zod; element?: Zod; shape?: Record<string, Zod> };
type Zod = { _zod: { def: unknown } };
const def = (s: Zod) => s._zod.def as Def;
function unwrapped(s: Zod): Zod {
  for (let d = def(s); ; d = def(s)) {
    if (d.innerType) s = d.innerType;
    else if (d.type === 'pipe' && d.in) s = d.in;
    else if (d.type === 'array' && d.element) s = d.element;
    else return s;
  }
}
/** Every key path in the schema, `ssh.authorized_keys`; list items as their object's keys. */
function schemaKeys(s: Zod, prefix = ''): string[] {
  const shape = def(unwrapped(s)).shape ?? {};
  return Object.entries(shape).flatMap(([k, v]) => [`${prefix}${k}`, ...schemaKeys(v, `${prefix}${k}.`)]);
}
/** Every key path whose value is a string (or a list of them), enums included. */
function stringKeys(s: Zod, prefix = ''): string[] {
  const shape = def(unwrapped(s)).shape ?? {};
  return Object.entries(shape).flatMap(([k, v]) => {
    const type = def(unwrapped(v)).type;
    return type === 'string' || type === 'enum' ? [`${prefix}${k}`] : stringKeys(v, `${prefix}${k}.`);
  });
}
/** The path exists in the parsed YAML (in some item, for lists). */
function hasPath(value: unknown, path: string[]): boolean {
  if (path.length === 0) return true;
  if (Array.isArray(value)) return value.some((item) => hasPath(item, path));
  if (typeof value !== 'object' || value === null || !(path[0]! in value)) return false;
  return hasPath((value as Record<string, unknown>)[path[0]!], path.slice(1));
}
