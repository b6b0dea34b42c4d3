// The inotify bridge against a real SSH server on 127.0.0.1 (test/helpers/ssh-server.ts) whose
// exec requests run on this machine: here the "guest" is a second directory B standing for the
// guest's view of host directory A, or A itself where a test needs the guest's replay to reach
// the host file as it would through 9p or virtiofs. Nothing contacts any address but 127.0.0.1.
// Every wait is bounded; nothing asserts on how long something took.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { watch as fsWatch, readdirSync, readFileSync, type FSWatcher } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import { RumError } from '../../src/errors.js';
import { startBridge, type Bridge, type BridgeEvent, type BridgeOptions } from '../../src/mounts/bridge.js';
import { compileIgnore } from '../../src/mounts/ignore.js';
import { GuestReplayer } from '../../src/mounts/replay.js';
import { connect, type SshTarget } from '../../src/ssh/connect.js';
import { generateKeyPair } from '../../src/ssh/keys.js';
import { freePort, generateEd25519, TestSshServer, type TestSshServerOptions } from '../helpers/ssh-server.js';

const client = await generateKeyPair('rum-test-client');

async function serve(t: TestContext, opts: Partial<TestSshServerOptions> = {}): Promise<TestSshServer> {
  const server = await TestSshServer.start({ clientPublicKey: client.public, ...opts });
  t.after(() => server.close());
  return server;
}

function targetFor(port: number, hostKey: string): SshTarget {
  return { host: '127.0.0.1', port, user: 'rum', privateKey: client.private, hostKey };
}

async function tempDir(t: TestContext, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `rum-bridge-${name}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function waitFor(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

interface Running {
  bridge: Bridge;
  events: BridgeEvent[];
  replayedPaths: () => string[];
}

async function bridgeOn(t: TestContext, server: TestSshServer, opts: Omit<BridgeOptions, 'connect'> & Partial<BridgeOptions>): Promise<Running> {
  const events: BridgeEvent[] = [];
  const bridge = await startBridge({
    connect: () => connect(targetFor(server.port, server.hostKey.public)),
    ...opts,
    onEvent: (e) => events.push(e),
  });
  t.after(() => bridge.close());
  const replayedPaths = () => events.flatMap((e) => (e.type === 'batch' ? e.paths : []));
  return { bridge, events, replayedPaths };
}

/** A watcher on the guest-side directory, as a dev server in the guest would have. */
function guestWatcher(t: TestContext, dir: string): { seen: { type: string; name: string }[]; close: () => void } {
  const seen: { type: string; name: string }[] = [];
  const w: FSWatcher = fsWatch(dir, (type, name) => seen.push({ type, name: String(name) }));
  t.after(() => w.close());
  return { seen, close: () => w.close() };
}

const mtimeNs = async (p: string) => (await lstat(p, { bigint: true })).mtimeNs;

test('a watcher on the guest side hears of a modify, a create, a rename and a delete on the host; contents are untouched', async (t) => {
  const server = await serve(t);
  const host = await tempDir(t, 'host');
  const guest = await tempDir(t, 'guest');
  // The guest's copies first: a copy newer than the host's file would be taken for a change the
  // host has not reported yet, and left alone.
  for (const dir of [guest, host]) {
    await writeFile(join(dir, 'a.txt'), 'one');
    await writeFile(join(dir, 'old.txt'), 'old');
    await writeFile(join(dir, 'gone.txt'), 'bye');
  }
  const { events } = await bridgeOn(t, server, { mounts: [{ hostPath: host, guestPath: guest }] });
  assert.equal(events[0]?.type, 'ready');

  // Each step: the guest directory first shows what the share would show after the host's
  // change (and makes no event: nobody watches yet), then the host changes, then the replay
  // must be what wakes the guest's watcher.
  await writeFile(join(guest, 'a.txt'), 'two, edited on the host');
  let w = guestWatcher(t, guest);
  await writeFile(join(host, 'a.txt'), 'two, edited on the host');
  await waitFor('a change event for a.txt in the guest', () => w.seen.some((e) => e.name === 'a.txt'));
  await sleep(200); // a storm would show by now
  assert.deepEqual(w.seen, [{ type: 'change', name: 'a.txt' }], 'one edit, one event');
  w.close();
  assert.equal(await readFile(join(guest, 'a.txt'), 'utf8'), 'two, edited on the host', 'the replay wrote nothing');
  assert.equal(await mtimeNs(join(guest, 'a.txt')), await mtimeNs(join(host, 'a.txt')), "the guest's mtime is the host's, to the ns");

  await writeFile(join(guest, 'new.txt'), 'fresh');
  w = guestWatcher(t, guest);
  await writeFile(join(host, 'new.txt'), 'fresh');
  await waitFor('an event for new.txt in the guest', () => w.seen.some((e) => e.name === 'new.txt'));
  w.close();

  await rename(join(guest, 'old.txt'), join(guest, 'renamed.txt'));
  w = guestWatcher(t, guest);
  await rename(join(host, 'old.txt'), join(host, 'renamed.txt'));
  // the new name gets its own event; the old name's directory is touched so it rescans
  await waitFor('events for renamed.txt and the directory', () =>
    w.seen.some((e) => e.name === 'renamed.txt') && w.seen.some((e) => e.name === basename(guest)),
  );
  w.close();

  await rm(join(guest, 'gone.txt'));
  w = guestWatcher(t, guest);
  await rm(join(host, 'gone.txt'));
  await waitFor('an event on the directory for the deletion', () => w.seen.some((e) => e.name === basename(guest)));
  w.close();
  assert.equal(await mtimeNs(guest), await mtimeNs(host));

  assert.deepEqual((await readdir(guest)).sort(), ['a.txt', 'new.txt', 'renamed.txt'], 'the replay made and removed no names');
  for (const e of events) if (e.type === 'batch') assert.deepEqual(e.ack.errors, {}, JSON.stringify(e.ack));
});

test('one host edit is one replayed path, and its echo on the host is not replayed again', async (t) => {
  const server = await serve(t);
  const dir = await tempDir(t, 'echo');
  const file = join(dir, 'f.txt');
  await writeFile(file, 'before');
  // An old atime: chokidar reports a change only when atime <= mtime (or mtime moved), and the
  // echo must be reported for this test to see it recognised.
  await utimes(file, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  // The guest path is the host path: the guest's setattr lands on the host file, as through 9p.
  const { bridge, replayedPaths } = await bridgeOn(t, server, { mounts: [{ hostPath: dir, guestPath: dir }] });
  await writeFile(file, 'after');
  const written = await mtimeNs(file);
  await waitFor('the edit to be replayed', () => bridge.stats().records >= 1);
  // chokidar on the host sees the replay's IN_MODIFY and reports a change: recognised as an echo
  await waitFor('the echo to be recognised', () => bridge.stats().suppressed >= 1, 5000);
  await sleep(300); // anything more would have been replayed by now
  const s = bridge.stats();
  assert.equal(s.records, 1, JSON.stringify(s));
  assert.equal(s.batches, 1);
  assert.deepEqual(replayedPaths(), [file]);
  assert.equal(await readFile(file, 'utf8'), 'after');
  assert.equal(await mtimeNs(file), written, 'the replay kept the mtime');
});

test('an echo is recognised however late it comes', async (t) => {
  // In a long burst the echoes of the first batches come back seconds later; replaying them
  // again made new echoes, and so on for as long as the bridge ran.
  const server = await serve(t);
  const dir = await tempDir(t, 'late-echo');
  const file = join(dir, 'f.txt');
  await writeFile(file, 'before');
  await utimes(file, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000)); // see above
  const { bridge } = await bridgeOn(t, server, { mounts: [{ hostPath: dir, guestPath: dir }] });
  await writeFile(file, 'after');
  await waitFor('the edit to be replayed', () => bridge.stats().records >= 1);
  await waitFor('the echo to be recognised', () => bridge.stats().suppressed >= 1, 5000);
  await sleep(2500); // past the 2 s an earlier version allowed an echo
  const suppressed = bridge.stats().suppressed;
  // What a replay does to the host file: its ctime moves, its mtime, size and mode do not.
  await chmod(file, (await lstat(file)).mode & 0o7777);
  await waitFor('the late echo to be recognised', () => bridge.stats().suppressed > suppressed, 5000);
  await sleep(300);
  assert.equal(bridge.stats().records, 1, JSON.stringify(bridge.stats()));
});

test('ignore patterns and version control directories are skipped', async (t) => {
  const server = await serve(t);
  const dir = await tempDir(t, 'ignore');
  for (const d of ['build', 'sub/.git', '.git', 'docs/a/b', '.hg']) await mkdir(join(dir, d), { recursive: true });
  const { replayedPaths } = await bridgeOn(t, server, {
    mounts: [{ hostPath: dir, guestPath: dir, ignore: ['# generated', '*.log', '!keep.log', 'build/', '/top.txt', 'docs/**/*.tmp'] }],
  });
  const files = {
    replayed: ['keep.log', 'sub/top.txt', 'docs/a/b/c.md', 'last.txt'],
    skipped: ['x.log', 'sub/y.log', 'build/out.js', 'top.txt', '.git/HEAD', 'sub/.git/config', '.hg/store', 'docs/c.tmp', 'docs/a/b/c.tmp'],
  };
  for (const f of [...files.skipped, ...files.replayed]) await writeFile(join(dir, f), f);
  await waitFor('the files that are not ignored', () => files.replayed.every((f) => replayedPaths().includes(join(dir, f))));
  await sleep(300);
  const replayed = replayedPaths();
  for (const f of files.skipped) assert.ok(!replayed.includes(join(dir, f)), `${f} was replayed`);
  assert.ok(!replayed.some((p) => p.startsWith(join(dir, 'build')) || p.includes('/.git')), replayed.join('\n'));
});

test('compileIgnore: the .gitignore subset', () => {
  const m = compileIgnore(['*.log', '!keep.log', 'build/', '/top.txt', 'docs/**/*.tmp', 'a/**', '**/cache', 'x?.[ch]', '\\#hash', 'trailing   ']);
  const cases: [string, boolean | undefined, boolean][] = [
    ['x.log', false, true],
    ['deep/er/x.log', false, true],
    ['keep.log', false, false],
    ['build', true, true],
    ['build', false, false], // a file named build: directory-only pattern
    ['build', undefined, false], // not known to be a directory
    ['build/out.js', false, true], // under an ignored directory
    ['src/build/out.js', false, true],
    ['top.txt', false, true],
    ['sub/top.txt', false, false], // anchored at the root
    ['docs/c.tmp', false, true],
    ['docs/a/b/c.tmp', false, true],
    ['other/docs/c.tmp', false, false],
    ['a', true, false], // a/** is what is inside a
    ['a/b', false, true],
    ['x/y/cache', true, true],
    ['xa.c', false, true],
    ['xab.c', false, false],
    ['#hash', false, true],
    ['trailing', false, true],
    ['.git', true, true],
    ['sub/.git/config', false, true],
    ['.svn/entries', false, true],
    ['.github/workflows/ci.yml', false, false],
    ['', true, false],
  ];
  for (const [path, isDir, want] of cases) assert.equal(m(path, isDir), want, `${path} (dir: ${isDir})`);
  // re-including a file under an ignored directory does not work, as in git
  assert.equal(compileIgnore(['out/', '!out/keep.js'])('out/keep.js', false), true);
});

test('a burst of 2,000 new files is replayed in a few round trips', async (t) => {
  const server = await serve(t);
  const dir = await tempDir(t, 'burst');
  const staging = await tempDir(t, 'staging');
  await mkdir(join(staging, 'many'));
  const { bridge, events, replayedPaths } = await bridgeOn(t, server, { mounts: [{ hostPath: dir, guestPath: dir }] });
  const names = Array.from({ length: 2000 }, (_, i) => `f${i}.txt`);
  for (let i = 0; i < names.length; i += 200) await Promise.all(names.slice(i, i + 200).map((n) => writeFile(join(staging, 'many', n), n)));
  // All 2,000 appear at once, as in a checkout, however slowly this machine writes the files.
  await rename(join(staging, 'many'), join(dir, 'many'));
  await waitFor('every file to be replayed', () => new Set(replayedPaths()).size >= 2001, 30_000); // and the directory
  const s = bridge.stats();
  assert.ok(s.roundTrips <= 20, JSON.stringify(s));
  // Large batches are split between forked workers: their acks add up to every record, no errors.
  const acks = events.flatMap((e) => (e.type === 'batch' ? [e.ack] : []));
  assert.equal(acks.reduce((n, a) => n + a.applied + a.newer, 0), s.records);
  assert.deepEqual(acks.flatMap((a) => Object.keys(a.errors)), []);
  const replayed = new Set(replayedPaths());
  for (const n of names) assert.ok(replayed.has(join(dir, 'many', n)), n);
});

test('the bridge reconnects when the guest goes away and replays what changed meanwhile', async (t) => {
  const port = await freePort();
  const hostKey = generateEd25519('test-host');
  const server = await serve(t, { port, hostKey });
  const dir = await tempDir(t, 'reconnect');
  const host = join(dir, 'host');
  const guest = join(dir, 'guest');
  await mkdir(host);
  await mkdir(guest);
  const { bridge, events, replayedPaths } = await bridgeOn(t, server, {
    mounts: [{ hostPath: host, guestPath: guest }],
    reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
  });
  await writeFile(join(guest, 'first.txt'), '1');
  await writeFile(join(host, 'first.txt'), '1');
  await waitFor('the first edit', () => replayedPaths().includes(join(guest, 'first.txt')));

  await server.close(); // the guest reboots
  await waitFor('the bridge to notice', () => events.some((e) => e.type === 'disconnected'));
  await writeFile(join(guest, 'during.txt'), 'while away');
  await writeFile(join(host, 'during.txt'), 'while away');
  await waitFor('a failed reconnect attempt', () => events.filter((e) => e.type === 'reconnecting').length >= 2);

  const again = await serve(t, { port, hostKey });
  await waitFor('the change made meanwhile to be replayed', () => replayedPaths().includes(join(guest, 'during.txt')));
  assert.equal(bridge.stats().reconnects, 1);
  assert.equal(again.logins, 1, 'one connection after the reboot');
  assert.ok(events.some((e) => e.type === 'reconnected'));
});

test('the bridge gives up after its bounded attempts and says so', async (t) => {
  const server = await serve(t);
  const dir = await tempDir(t, 'giveup');
  const { bridge, events } = await bridgeOn(t, server, {
    mounts: [{ hostPath: dir, guestPath: dir }],
    reconnect: { maxAttempts: 3, initialDelayMs: 20, maxDelayMs: 40 },
  });
  await server.close();
  await assert.rejects(bridge.done, (e: unknown) => e instanceof RumError && e.code === 'SSH' && /could not reconnect \(3 attempts/.test(e.message));
  assert.equal(events.filter((e) => e.type === 'reconnecting').length, 3);
  assert.equal(events.at(-1)?.type, 'failed');
});

test('a guest without python3 fails at once, without retrying', async (t) => {
  const server = await serve(t, {
    respond: (cmd) => (cmd.includes('python3') ? { code: 127, stderr: 'sh: 1: exec: python3: not found\n' } : undefined),
  });
  const dir = await tempDir(t, 'nopython');
  await assert.rejects(
    startBridge({ mounts: [{ hostPath: dir, guestPath: dir }], connect: () => connect(targetFor(server.port, server.hostKey.public)) }),
    (e: unknown) => e instanceof RumError && e.code === 'TOOL_MISSING',
  );
  assert.equal(server.logins, 1);
});

test('the replay program touches nothing outside its mount roots', async (t) => {
  const server = await serve(t);
  const root = await tempDir(t, 'root');
  const outside = await tempDir(t, 'outside');
  const file = join(outside, 'f');
  await writeFile(file, 'x');
  const before = await mtimeNs(file);
  const session = await connect(targetFor(server.port, server.hostKey.public));
  t.after(() => session.close());
  const replayer = await GuestReplayer.start(session, [root]);
  const ack = await replayer.send([
    { path: file, mtimeNs: 1_000_000_000n, file: true },
    { path: `${root}/../${basename(outside)}/f`, mtimeNs: 1_000_000_000n, file: true },
    { path: join(root, 'missing'), mtimeNs: 1_000_000_000n, file: true },
  ]);
  assert.equal(ack.applied, 0);
  assert.equal(ack.errors['outside the mounts']?.count, 2);
  assert.equal(ack.errors.ENOENT?.count, 1);
  assert.equal(await mtimeNs(file), before);
  await replayer.close();
});

test('a symlinked directory inside a mount cannot lead a replay outside it', async (t) => {
  const server = await serve(t);
  const root = await tempDir(t, 'root-link');
  const outside = await tempDir(t, 'outside-link');
  await writeFile(join(outside, 'f'), 'x');
  await symlink(outside, join(root, 'link'));
  const before = await mtimeNs(join(outside, 'f'));
  const session = await connect(targetFor(server.port, server.hostKey.public));
  t.after(() => session.close());
  const replayer = await GuestReplayer.start(session, [root]);
  // Alone (the open-and-close path) and in a burst (by name, on a worker): refused both ways.
  for (const filler of [0, 300]) {
    const records = [{ path: join(root, 'link', 'f'), mtimeNs: 1_000_000_000n, file: true }];
    for (let i = 0; i < filler; i++) records.push({ path: join(root, `missing-${i}`), mtimeNs: 1_000_000_000n, file: true });
    const ack = await replayer.send(records);
    assert.equal(ack.applied, 0, JSON.stringify(ack));
    assert.equal(ack.errors['outside the mounts']?.count, 1, JSON.stringify(ack));
  }
  assert.equal(await mtimeNs(join(outside, 'f')), before);
  await replayer.close();
});

test('a burst is shared among worker processes, which end with the replay program', async (t) => {
  const server = await serve(t);
  const root = await tempDir(t, 'workers');
  const records = [];
  for (let d = 0; d < 4; d++) {
    await mkdir(join(root, `d${d}`));
    for (let i = 0; i < 100; i++) {
      const p = join(root, `d${d}`, `f${i}`);
      await writeFile(p, 'x');
      records.push({ path: p, mtimeNs: (await mtimeNs(p)) + 1_000_000_000n, file: true });
    }
  }
  const session = await connect(targetFor(server.port, server.hostKey.public));
  t.after(() => session.close());
  const replayer = await GuestReplayer.start(session, [root]);
  const ack = await replayer.send(records);
  assert.deepEqual(ack, { applied: 400, newer: 0, errors: {} });
  for (const r of records) assert.equal(await mtimeNs(r.path), r.mtimeNs, r.path);
  // The program and its workers: the python3 processes whose arguments name this root.
  if (availableParallelism() > 1) assert.ok(pythonsNaming(root) >= 2, 'a worker was forked beside the program');
  await replayer.close();
  await waitFor('the replay program and its workers to end', () => pythonsNaming(root) === 0, 5000);
});

function pythonsNaming(arg: string): number {
  let n = 0;
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (basename(argv[0] ?? '') === 'python3' && argv.includes(arg)) n++;
    } catch {
      // ended meanwhile
    }
  }
  return n;
}

test('a mount root under a symlinked directory is replayed, and a path twice in a burst is answered twice', async (t) => {
  // As on Fedora Silverblue, where /home -> var/home: the guest names the mount through the link.
  const server = await serve(t);
  const base = await tempDir(t, 'linked-root');
  await mkdir(join(base, 'real', 'proj', 'd'), { recursive: true });
  await symlink(join(base, 'real'), join(base, 'link'));
  const root = join(base, 'link', 'proj');
  const session = await connect(targetFor(server.port, server.hostKey.public));
  t.after(() => session.close());
  const replayer = await GuestReplayer.start(session, [root]);
  const records = [];
  for (let i = 0; i < 300; i++) {
    await writeFile(join(root, 'd', `f${i}`), 'x');
    records.push({ path: join(root, 'd', `f${i}`), mtimeNs: 2_000_000_000_000_000_000n, file: true });
  }
  assert.deepEqual(await replayer.send(records.slice(0, 3)), { applied: 3, newer: 0, errors: {} }, 'a small batch');
  const ack = await replayer.send([...records, records[7]!, records[8]!]);
  assert.deepEqual(ack, { applied: 302, newer: 0, errors: {} }, 'a burst, with two paths twice');
  assert.equal(await mtimeNs(join(base, 'real', 'proj', 'd', 'f299')), 2_000_000_000_000_000_000n);
  await replayer.close();
});
