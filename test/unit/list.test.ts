// `rum list`: VM directories fabricated in a temporary data directory (damaged owner.json and
// state.json, no state record, an overlay or none, directories that are not rum's), the
// `virsh list` parser on real virsh output, the merge with libvirt's answers (an unreachable URI
// included), virsh itself on libvirt's in-process test driver, and the command end to end.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { describeNote } from '../../src/cli/commands/list.js';
import { visible } from '../../src/cli/output.js';
import { onCalls, reply, word, xdrString } from '../helpers/fake-libvirtd.js';
import type { Config } from '../../src/config/schema.js';
import { listDomains, parseDomainList, titleNames, xmlTitle, type DomainListing, type ListedDomain } from '../../src/libvirt/domain-list.js';
import { VmDir } from '../../src/paths.js';
import { Machine } from '../../src/machine/machine.js';
import { claim, type OpenProject } from '../../src/machine/project.js';
import { listVms, mergeListing, readVmRecords, type VmRecord } from '../../src/vm-list.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const hasVirsh = spawnSync('virsh', ['--version']).status === 0;

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'rum-list-'));
});
after(() => rm(tmp, { recursive: true, force: true }));

let n = 0;
/** A fresh XDG_DATA_HOME with the given VM directories: file name -> content (undefined: none). */
async function dataHome(vms: Record<string, Record<string, string | Buffer>>): Promise<string> {
  const home = join(tmp, `data-${++n}`);
  for (const [name, files] of Object.entries(vms)) {
    await mkdir(join(home, 'rum', name), { recursive: true });
    for (const [f, content] of Object.entries(files)) await writeFile(join(home, 'rum', name, f), content);
  }
  return home;
}

const owner = (config: string, more: object = {}) => JSON.stringify({ config, uri: 'qemu:///system', user: 'rum', ...more });
const stateWith = (data: object | undefined) =>
  JSON.stringify({ version: 1, generation: 1, nodes: data ? { 'ssh-ready': { key: 'k', fields: {}, output: 'o', data, time: 't' } } : {} });

// ---- the data directory ----

test('readVmRecords: each VM directory with what can be read of it; others are not listed', async () => {
  const home = await dataHome({
    web: { 'owner.json': owner('/p/web/rum.yaml'), 'state.json': stateWith({ host: '127.0.0.1', port: 2222 }) },
    fresh: { 'owner.json': owner('/p/fresh/rum.yaml', { uri: 'qemu:///session', user: 'dev' }) }, // claimed, never built
    old: { 'owner.json': JSON.stringify({ config: '/p/old/rum.yaml' }), 'state.json': stateWith(undefined) }, // before uri/user
    torn: { 'owner.json': '{"config": "/p/to', 'state.json': stateWith({ host: '10.0.0.5', port: 22 }) },
    wrong: { 'owner.json': JSON.stringify({ config: 7 }) },
    badstate: { 'owner.json': owner('/p/b/rum.yaml'), 'state.json': '{"version": 1, "nodes": ' },
    orphan: { 'state.json': stateWith(undefined) }, // a state record and no owner
    badaddr: { 'owner.json': owner('/p/a/rum.yaml'), 'state.json': stateWith({ host: 5, port: 'x' }) },
    evil: { 'owner.json': owner('/p/e/rum.yaml', { uri: 'qemu:///system; rm -rf ~' }) },
    empty: {}, // neither file: not rum's
    Not_A_Label: { 'owner.json': owner('/p/x/rum.yaml') }, // rum never makes such a name
  });
  const records = await readVmRecords(join(home, 'rum'));
  const by = new Map(records.map((r) => [r.name, r]));
  assert.deepEqual(
    records.map((r) => r.name),
    ['badaddr', 'badstate', 'evil', 'fresh', 'old', 'orphan', 'torn', 'web', 'wrong'],
  );
  assert.deepEqual(by.get('web'), {
    name: 'web',
    dir: join(home, 'rum', 'web'),
    config: '/p/web/rum.yaml',
    uri: 'qemu:///system',
    uriAssumed: false,
    user: 'rum',
    ssh: { host: '127.0.0.1', port: 2222 },
    diskBytes: null,
    unreadable: [],
  });
  assert.equal(by.get('fresh')!.uri, 'qemu:///session');
  assert.equal(by.get('fresh')!.ssh, null);
  assert.deepEqual(by.get('fresh')!.unreadable, []); // no state record is no problem
  assert.deepEqual([by.get('old')!.uri, by.get('old')!.uriAssumed, by.get('old')!.user], ['qemu:///system', true, null]);
  for (const name of ['torn', 'wrong', 'orphan', 'evil']) {
    const r = by.get(name)!;
    assert.equal(r.config, null, name);
    assert.equal(r.uri, null, name); // nowhere to ask
    assert.equal(r.unreadable[0]?.file, 'owner.json', name);
  }
  assert.equal(by.get('orphan')!.unreadable[0]!.why, 'missing');
  assert.deepEqual(by.get('torn')!.ssh, { host: '10.0.0.5', port: 22 }); // what can be read is kept
  assert.equal(by.get('badstate')!.config, '/p/b/rum.yaml');
  assert.equal(by.get('badstate')!.unreadable[0]!.file, 'state.json');
  assert.equal(by.get('badaddr')!.ssh, null);
  assert.deepEqual(by.get('badaddr')!.unreadable, []);
});

test('readVmRecords: disk use is the blocks the overlay takes, not its apparent size', async () => {
  const home = await dataHome({ web: { 'owner.json': owner('/p/web/rum.yaml') } });
  const overlay = join(home, 'rum', 'web', 'disk.qcow2');
  await writeFile(overlay, Buffer.alloc(1 << 20, 1)); // 1 MiB really written...
  await truncate(overlay, 10 * 2 ** 30); // ...in a 10 GiB sparse file
  const st = await stat(overlay);
  const [r] = await readVmRecords(join(home, 'rum'));
  assert.equal(r!.diskBytes, st.blocks * 512);
  assert.ok(r!.diskBytes! >= 2 ** 20 && r!.diskBytes! < 2 ** 30, String(r!.diskBytes));
});

test('readVmRecords: no data directory is no VMs; an unreadable one is a STATE error', async (t) => {
  assert.deepEqual(await readVmRecords(join(tmp, 'nothing-here')), []);
  const file = join(tmp, 'a-file');
  await writeFile(file, '');
  await assert.rejects(readVmRecords(file), (err: Error & { code?: string }) => err.code === 'STATE' && err.message.includes(file));
  if (process.getuid?.() === 0) t.diagnostic('running as root: directory permissions are not exercised');
});

// ---- virsh list ----

// virsh 9.0, `list --all --title`, LC_ALL=C.UTF-8, on the test driver with the domains below.
const VIRSH_TITLE = [
  ' Id   Name          State         Title',
  '-------------------------------------------------------------',
  ' 1    web           running       rum: /home/u/web/rum.yaml',
  ' 2    cache         paused        ',
  ' 3    web running   in shutdown   ',
  ' -    db            shut off      rum: /home/é x/a  b/rum.yaml',
  '',
].join('\n');

test('parseDomainList: cells cut at the header, so states and names with spaces stay whole', () => {
  assert.deepEqual(parseDomainList(VIRSH_TITLE), [
    { name: 'web', state: 'running', title: 'rum: /home/u/web/rum.yaml' },
    { name: 'cache', state: 'paused', title: '' },
    { name: 'web running', state: 'in shutdown', title: '' },
    { name: 'db', state: 'shut off', title: 'rum: /home/é x/a  b/rum.yaml' },
  ]);
});

test('parseDomainList: no title column, rows that do not line up, an empty list, no table', () => {
  assert.deepEqual(parseDomainList(' Id   Name   State\n--------------------\n 4    a      running\n -    bb     shut off\n'), [
    { name: 'a', state: 'running', title: '' },
    { name: 'bb', state: 'shut off', title: '' },
  ]);
  // An old virsh's printf table: a name longer than its column pushes the row; a wide name.
  const shifted = [
    ' Id    Name                           State      Title',
    '------------------------------------------------------',
    ' -     a-very-long-domain-name-beyond-thirty shut off   rum: /p/rum.yaml',
    ' 7     日本                           running    x',
  ].join('\n');
  assert.deepEqual(parseDomainList(shifted), [
    { name: 'a-very-long-domain-name-beyond-thirty', state: 'shut off', title: 'rum: /p/rum.yaml' },
    { name: '日本', state: 'running', title: 'x' },
  ]);
  assert.deepEqual(parseDomainList(' Id   Name   State   Title\n----------------------------\n\n'), []);
  assert.deepEqual(parseDomainList(''), []);
  assert.deepEqual(parseDomainList(' Id   Name   State\n---\n 1    x      sleeping-deeply\n'), [{ name: 'x', state: 'unknown', title: '' }]);
});

test('titleNames: exact, or under a C locale with each non-ASCII character as escapes', () => {
  assert.equal(titleNames('rum: /p/rum.yaml', '/p/rum.yaml'), true);
  assert.equal(titleNames('rum: /q/rum.yaml', '/p/rum.yaml'), false);
  assert.equal(titleNames('', '/p/rum.yaml'), false);
  assert.equal(titleNames('rum: /home/\\xff\\xff x/rum.yaml', '/home/é x/rum.yaml'), true);
  assert.equal(titleNames('rum: /home/\\xff\\xff y/rum.yaml', '/home/é x/rum.yaml'), false);
  assert.equal(titleNames('rum: /a.b/(x)', '/a.b/(x)'), true);
  assert.equal(titleNames('rum: /aXb/\\x01', '/a.b/é'), false); // '.' is not a wildcard
});

test('listDomains on the real virsh: the test driver, a socket nobody serves, virsh missing', { skip: !hasVirsh && 'virsh is not installed' }, async () => {
  const node = join(tmp, 'node.xml');
  const dom = (name: string, extra: string) =>
    `<domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0"><name>${name}</name>${extra}<memory>65536</memory><os><type>hvm</type></os></domain>`;
  await writeFile(
    node,
    `<node><cpu><mhz>2000</mhz></cpu>${dom('web', '<title>rum: /home/u/web/rum.yaml</title>')}${dom('db', '<title>rum: /home/é/rum.yaml</title><test:runstate>5</test:runstate>')}${dom('cache', '<test:runstate>3</test:runstate>')}</node>`,
  );
  const ok = await listDomains(`test://${node}`, ['web', 'db']);
  assert.ok(ok.ok, JSON.stringify(ok));
  assert.deepEqual(
    [...ok.domains.values()].sort((a, b) => (a.name < b.name ? -1 : 1)),
    [
      { name: 'cache', state: 'paused', title: '' },
      { name: 'db', state: 'shut off', title: 'rum: /home/é/rum.yaml' }, // C.UTF-8: the title as written
      { name: 'web', state: 'running', title: 'rum: /home/u/web/rum.yaml' },
    ],
  );
  const down = await listDomains(`qemu+unix:///system?socket=${join(tmp, 'no-daemon-sock')}`, ['web']);
  assert.equal(down.ok, false);
  assert.ok(!down.ok && /^virsh list: Failed to connect socket to '.*no-daemon-sock': No such file or directory$/.test(down.message), JSON.stringify(down));
  assert.ok(!down.ok && /no libvirt daemon is listening/.test(down.hint ?? ''));
  const missing = await listDomains('qemu:///system', ['web'], { env: { PATH: '/nonexistent-rum-test', RUM_LIBVIRT_RPC: '0' } });
  assert.deepEqual(missing, { ok: false, message: 'virsh is not installed (not found on PATH)', hint: 'apt install libvirt-clients' });
});

/** A libvirt daemon on a session socket under a temporary XDG_RUNTIME_DIR, answering from `domains`. */
async function fakeDaemon(t: test.TestContext, domains: Record<string, { state: number; xml: string }>, seen: number[]): Promise<NodeJS.ProcessEnv> {
  const dir = await mkdtemp(join(tmpdir(), 'rum-list-rpc-'));
  await mkdir(join(dir, 'libvirt'));
  const str = xdrString;
  const server = createServer((sock) => {
    onCalls(sock, (call, proc) => {
      seen.push(proc);
      const name = proc === 23 || proc === 212 || proc === 14 ? call.toString('utf8', 32, 32 + call.readUInt32BE(28)) : '';
      if (proc === 66) sock.write(reply(call, word(0)));
      else if (proc === 1) sock.write(reply(call, Buffer.alloc(0)));
      else if (proc === 23 && !domains[name]) sock.write(reply(call, Buffer.concat([word(42), word(10), word(1), str(`Domain not found: '${name}'`)]), 1));
      else if (proc === 23) sock.write(reply(call, Buffer.concat([str(name), Buffer.alloc(16, 7), word(-1)])));
      else if (proc === 212) sock.write(reply(call, Buffer.concat([word(domains[name]!.state), word(0)])));
      else if (proc === 14) sock.write(reply(call, str(domains[name]!.xml)));
    });
  });
  await new Promise<void>((r) => server.listen(join(dir, 'libvirt', 'libvirt-sock'), r));
  t.after(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { XDG_RUNTIME_DIR: dir, PATH: '/nonexistent-rum-test' }; // virsh is never the way here
}

test('listDomains over the daemon socket: every name in one connection, titles read from the XML', async (t) => {
  const seen: number[] = [];
  const env = await fakeDaemon(
    t,
    {
      web: { state: 1, xml: "<domain type='kvm'>\n  <name>web</name>\n  <title>rum: /home/u/a &amp; b/&lt;x&gt;/rum.yaml</title>\n</domain>\n" },
      db: { state: 5, xml: "<domain type='kvm'><name>db</name></domain>" },
      odd: { state: 99, xml: '<domain><title>rum: /p/&#233;&#x1F600;/rum.yaml</title></domain>' },
    },
    seen,
  );
  const r = await listDomains('qemu:///session', ['web', 'db', 'gone', 'odd'], { env, euid: 7 });
  assert.ok(r.ok, JSON.stringify(r));
  assert.deepEqual(
    [...r.domains.values()],
    [
      { name: 'web', state: 'running', title: 'rum: /home/u/a & b/<x>/rum.yaml' },
      { name: 'db', state: 'shut off', title: '' },
      { name: 'odd', state: 'unknown', title: 'rum: /p/é😀/rum.yaml' },
    ],
  );
  assert.deepEqual(seen.filter((p) => p === 1).length, 1); // one connection opened
  assert.deepEqual(seen.filter((p) => p === 23).length, 4);
  // No daemon on that socket: virsh is the way, and here there is none.
  const none = await listDomains('qemu:///session', ['web'], { env: { ...env, XDG_RUNTIME_DIR: join(tmp, 'no-runtime') }, euid: 7 });
  assert.deepEqual(none, { ok: false, message: 'virsh is not installed (not found on PATH)', hint: 'apt install libvirt-clients' });
});

test('xmlTitle: the title element, entities decoded; none is empty', () => {
  assert.equal(xmlTitle('<domain><name>a</name><title>rum: /p/it&apos;s &quot;q&quot;/rum.yaml</title></domain>'), 'rum: /p/it\'s "q"/rum.yaml');
  assert.equal(xmlTitle('<domain><name>a</name></domain>'), '');
  assert.equal(xmlTitle('<domain><title>&bogus; &#xFFFFFFF;</title></domain>'), '&bogus; &#xFFFFFFF;');
});

// ---- merging ----

const record = (name: string, over: Partial<VmRecord> = {}): VmRecord => ({
  name,
  dir: `/d/rum/${name}`,
  config: `/p/${name}/rum.yaml`,
  uri: 'qemu:///system',
  uriAssumed: false,
  user: 'rum',
  ssh: { host: '127.0.0.1', port: 2200 },
  diskBytes: 4096,
  unreadable: [],
  ...over,
});
const listed = (...ds: [string, string, string?][]): DomainListing => ({
  ok: true,
  domains: new Map(ds.map(([name, state, title]): [string, ListedDomain] => [name, { name, state, title: title ?? `rum: /p/${name}/rum.yaml` }])),
});

test('mergeListing: states from each URI, addresses only while running, an unreachable URI as unknown', () => {
  const records = [
    record('web'),
    record('db', { ssh: { host: '10.0.0.9', port: 22 } }),
    record('gone'),
    record('sess', { uri: 'qemu:///session' }),
    record('theirs'),
    record('torn', { config: null, uri: null, user: null, unreadable: [{ file: 'owner.json', why: 'not JSON' }] }),
    record('old', { uriAssumed: true, user: null }),
  ];
  const answers = new Map<string, DomainListing>([
    ['qemu:///system', listed(['web', 'running'], ['db', 'shut off'], ['theirs', 'running', 'rum: /elsewhere/rum.yaml'], ['old', 'running'], ['stranger', 'running'])],
    ['qemu:///session', { ok: false, message: "virsh list: Failed to connect socket to '/run/user/1000/libvirt/libvirt-sock': Permission denied", hint: 'check that this user may use the libvirt socket' }],
  ]);
  const { vms, notes } = mergeListing(records, answers);
  const by = new Map(vms.map((v) => [v.vm, v]));
  assert.deepEqual(by.get('web'), {
    vm: 'web',
    config: '/p/web/rum.yaml',
    uri: 'qemu:///system',
    dir: '/d/rum/web',
    state: 'running',
    ssh: { host: '127.0.0.1', port: 2200, user: 'rum' },
    diskBytes: 4096,
  });
  assert.deepEqual([by.get('db')!.state, by.get('db')!.ssh], ['shut off', null]);
  assert.equal(by.get('gone')!.state, 'absent');
  assert.deepEqual([by.get('sess')!.state, by.get('sess')!.ssh], ['unknown', null]);
  assert.equal(by.get('theirs')!.state, 'absent'); // a domain of that name, but not this VM's
  assert.equal(by.get('torn')!.state, 'unknown');
  assert.deepEqual(by.get('old')!.ssh, { host: '127.0.0.1', port: 2200, user: null });
  assert.equal(vms.length, records.length); // 'stranger' is no VM of rum's
  assert.deepEqual(notes, [
    { type: 'unreadable', vm: 'torn', file: 'owner.json', why: 'not JSON' },
    { type: 'not-rums', vm: 'theirs', uri: 'qemu:///system', title: 'rum: /elsewhere/rum.yaml' },
    {
      type: 'libvirt-unreachable',
      uri: 'qemu:///session',
      vms: ['sess'],
      message: "virsh list: Failed to connect socket to '/run/user/1000/libvirt/libvirt-sock': Permission denied",
      hint: 'check that this user may use the libvirt socket',
    },
    { type: 'uri-assumed', vms: ['old'], uri: 'qemu:///system' },
  ]);
  assert.match(describeNote(notes[1]!), /^theirs: the libvirt domain "theirs" on qemu:\/\/\/system is not this VM's \(it belongs to \/elsewhere\/rum.yaml\)/);
  assert.match(describeNote(notes[2]!), /^qemu:\/\/\/session could not be asked \(sess shown as unknown\): virsh list: .*Permission denied$/);
});

test('listVms: one question per distinct URI, none for a VM whose URI is unknown', async () => {
  const home = await dataHome({
    a: { 'owner.json': owner('/p/a/rum.yaml') },
    b: { 'owner.json': owner('/p/b/rum.yaml') },
    c: { 'owner.json': owner('/p/c/rum.yaml', { uri: 'qemu:///session' }) },
    d: { 'owner.json': 'garbage' },
  });
  const asked: string[] = [];
  const { vms } = await listVms({
    env: { XDG_DATA_HOME: home },
    listDomains: async (uri, names) => {
      asked.push(`${uri} ${names.join(',')}`);
      return listed(['a', 'running'], ['c', 'paused']);
    },
  });
  assert.deepEqual(asked.sort(), ['qemu:///session c', 'qemu:///system a,b']);
  assert.deepEqual(
    vms.map((v) => [v.vm, v.state]),
    [
      ['a', 'running'],
      ['b', 'absent'],
      ['c', 'paused'],
      ['d', 'unknown'],
    ],
  );
});

test('visible: untrusted bytes reach the terminal escaped', () => {
  assert.equal(visible('/home/u/\x1b[31mred\nx\u202e/rum.yaml'), '/home/u/\\u001b[31mred\\u000ax\\u202e/rum.yaml');
  assert.equal(visible('/home/é x/rum.yaml'), '/home/é x/rum.yaml');
  assert.equal(
    describeNote({ type: 'unreadable', vm: 'x', file: 'state.json', why: 'bad \x07 bytes' }),
    'x: state.json is not readable: bad \\u0007 bytes',
  );
});

// ---- owner.json ----

test('claim records the URI and SSH user, completes an old owner.json, and does not rewrite an unchanged one', async () => {
  const home = join(tmp, `claim-${++n}`);
  const env = { XDG_DATA_HOME: home };
  const vm = new VmDir('web', env);
  const config = { name: 'web', file: '/p/web/rum.yaml', libvirt: { uri: 'qemu:///session' }, ssh: { user: 'dev' } } as unknown as Config;
  await mkdir(vm.dir, { recursive: true });
  await writeFile(vm.path('owner'), JSON.stringify({ config: config.file })); // as rum wrote it before
  const m = new Machine({ ...config, machine: 'web', after: [] }, vm, env);
  const o = { project: { name: 'web', file: config.file, dir: '/p/web', single: true, machines: [m.config] }, machines: [m], env, claimed: new Set([m]) } as OpenProject;
  await claim(o, m);
  assert.deepEqual(JSON.parse(await readFile(vm.path('owner'), 'utf8')), { config: '/p/web/rum.yaml', uri: 'qemu:///session', user: 'dev' });
  const before = await stat(vm.path('owner'));
  await claim(o, m);
  assert.equal((await stat(vm.path('owner'))).ino, before.ino); // written atomically: a rewrite is a new inode
  const [r] = await readVmRecords(join(home, 'rum'));
  assert.deepEqual([r!.uri, r!.uriAssumed, r!.user], ['qemu:///session', false, 'dev']);
});

// ---- the command ----

function rum(args: string[], env: NodeJS.ProcessEnv) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { env: { ...process.env, NO_COLOR: '1', ...env }, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('rum list: an aligned table, notes on stderr, exit 0 with libvirt unreachable', async () => {
  const home = await dataHome({
    web: { 'owner.json': owner('/p/web/rum.yaml', { uri: `qemu+unix:///system?socket=${join(tmp, 'nobody')}` }) },
    'x-2': { 'owner.json': JSON.stringify({ config: '/p/\x1b[2Jx/rum.yaml' }) },
  });
  const r = rum(['list'], { XDG_DATA_HOME: home, PATH: '/nonexistent-rum-test', RUM_LIBVIRT_RPC: '0' }); // no virsh at all
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.split('\n'), [
    'NAME  STATE    ADDRESS  DISK  PROJECT',
    'web   unknown  -        -     /p/web/rum.yaml',
    'x-2   unknown  -        -     /p/\\u001b[2Jx/rum.yaml',
    '',
  ]);
  assert.ok(!r.stdout.includes('\x1b') && !r.stderr.includes('\x1b'));
  assert.match(r.stderr, /could not be asked \(web shown as unknown\): virsh is not installed/);
  assert.match(r.stderr, /hint: apt install libvirt-clients/);
  assert.match(r.stderr, /x-2: made before rum recorded the libvirt URI, so qemu:\/\/\/system is assumed/);
});

test('rum list --json: the documented shape; no VMs', async () => {
  const home = await dataHome({ web: { 'owner.json': owner('/p/web/rum.yaml'), 'state.json': stateWith({ host: '127.0.0.1', port: 2222 }) } });
  const r = rum(['list', '--json'], { XDG_DATA_HOME: home, PATH: '/nonexistent-rum-test', RUM_LIBVIRT_RPC: '0' });
  assert.equal(r.status, 0, r.stderr);
  const data = JSON.parse(r.stdout);
  assert.deepEqual(data.vms, [{ vm: 'web', config: '/p/web/rum.yaml', uri: 'qemu:///system', dir: join(home, 'rum', 'web'), state: 'unknown', ssh: null, diskBytes: null }]);
  assert.deepEqual(
    data.notes.map((x: { type: string }) => x.type),
    ['libvirt-unreachable'],
  );
  assert.equal(typeof data.notes[0].text, 'string');
  const none = rum(['list'], { XDG_DATA_HOME: join(tmp, 'no-such-home') });
  assert.deepEqual([none.status, none.stdout], [0, 'no VMs\n']);
  assert.deepEqual(JSON.parse(rum(['list', '--json'], { XDG_DATA_HOME: join(tmp, 'no-such-home') }).stdout), { vms: [], notes: [] });
});
