// rum cp's transfers against a real SSH server (test/helpers/ssh-server.ts) on 127.0.0.1, whose
// "guest" runs commands with the local /bin/sh: the guest's tar here is the local GNU tar, and the
// guest's files are a second temp directory. Trees are compared byte for byte, with modes, mtimes
// (to the second) and symlink targets. Nothing here contacts any address but 127.0.0.1.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, link, lstat, lutimes, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { Pack } from 'tar';
import { cp, cpPlan } from '../../src/cli/commands/cp.js';
import { RumError } from '../../src/errors.js';
import { connect, type SshSession } from '../../src/ssh/connect.js';
import { generateKeyPair } from '../../src/ssh/keys.js';
import { download, guestPath, rebase, upload, type TransferProgress } from '../../src/ssh/transfer.js';
import { TestSshServer, type TestSshServerOptions } from '../helpers/ssh-server.js';

const client = await generateKeyPair('rum-cp-test');
const big = randomBytes(20 * 1024 * 1024 + 123); // not a multiple of any block size
const AWKWARD = `it's a "quoted" name, ünïcødé € ✓.txt`;

async function guest(t: TestContext, opts: Partial<TestSshServerOptions> = {}): Promise<{ server: TestSshServer; session: SshSession }> {
  const server = await TestSshServer.start({ clientPublicKey: client.public, ...opts });
  const session = await connect({ host: '127.0.0.1', port: server.port, user: 'rum', privateKey: client.private, hostKey: server.hostKey.public });
  t.after(async () => {
    await session.close();
    await server.close();
  });
  return { server, session };
}

/** host/ and guest/ under one temp directory, removed afterwards (read-only directories too). */
async function sides(t: TestContext): Promise<{ host: string; guest: string }> {
  const root = await mkdtemp(join(tmpdir(), 'rum cp-'));
  t.after(async () => {
    await execa('chmod', ['-R', 'u+rwx', root]);
    await rm(root, { recursive: true, force: true });
  });
  await mkdir(join(root, 'host'));
  await mkdir(join(root, 'guest'));
  return { host: join(root, 'host'), guest: join(root, 'guest') };
}

/** A tree with what a project holds, every mtime set to a distinct time in the past. */
async function makeTree(dir: string): Promise<void> {
  await mkdir(join(dir, 'a/b/c'), { recursive: true });
  await writeFile(join(dir, 'a/b/c/deep.txt'), 'deep\n');
  await writeFile(join(dir, 'a/plain.txt'), 'plain\n');
  await mkdir(join(dir, 'bin'));
  await writeFile(join(dir, 'bin/run.sh'), '#!/bin/sh\necho run\n', { mode: 0o755 });
  await writeFile(join(dir, 'secret'), 'only me\n', { mode: 0o600 });
  await chmod(join(dir, 'secret'), 0o600);
  await writeFile(join(dir, 'everyone'), 'rw for all\n');
  await chmod(join(dir, 'everyone'), 0o666); // a umask would take the group and other write bits
  await mkdir(join(dir, 'empty'));
  await mkdir(join(dir, 'locked'));
  await writeFile(join(dir, 'locked/inside'), 'in a read-only directory\n');
  await writeFile(join(dir, 'big.bin'), big);
  await writeFile(join(dir, AWKWARD), 'awkward\n');
  await writeFile(join(dir, '-dash'), 'not an option\n');
  await link(join(dir, 'a/plain.txt'), join(dir, 'hard.txt')); // a tar member that names another
  await symlink('bin/run.sh', join(dir, 'link'));
  await symlink('/nonexistent/absolute/target', join(dir, 'abs-link')); // kept as written, dangling
  await symlink('../a', join(dir, 'bin/up'));
  await setTimes(dir, 1_600_000_000);
  await chmod(join(dir, 'locked'), 0o555);
}

/** Deepest first, so a directory's time is set after its contents stopped changing it. */
async function setTimes(p: string, t: number): Promise<number> {
  const st = await lstat(p);
  if (st.isDirectory()) for (const name of (await readdir(p)).sort()) t = await setTimes(join(p, name), t + 1000);
  await lutimes(p, t, t);
  return t;
}

interface Node {
  type: 'file' | 'dir' | 'link';
  mode?: number;
  mtime: number;
  content?: Buffer;
  target?: string;
}

async function snapshot(p: string, into = new Map<string, Node>(), rel = '.'): Promise<Map<string, Node>> {
  const st = await lstat(p);
  const mtime = Math.floor(st.mtimeMs / 1000);
  if (st.isSymbolicLink()) into.set(rel, { type: 'link', mtime, target: await readlink(p) });
  else if (st.isFile()) into.set(rel, { type: 'file', mode: st.mode & 0o7777, mtime, content: await readFile(p) });
  else {
    into.set(rel, { type: 'dir', mode: st.mode & 0o7777, mtime });
    for (const name of await readdir(p)) await snapshot(join(p, name), into, `${rel}/${name}`);
  }
  return into;
}

async function assertSameTree(actual: string, expected: string): Promise<void> {
  const [a, e] = await Promise.all([snapshot(actual), snapshot(expected)]);
  assert.deepEqual([...a.keys()].sort(), [...e.keys()].sort());
  for (const [rel, want] of e) {
    const got = a.get(rel)!;
    // deepEqual on a 20 MB Buffer would print all of it on failure
    if (want.content) assert.ok(got.content?.equals(want.content), `${rel}: content differs`);
    assert.deepEqual({ ...got, content: undefined }, { ...want, content: undefined }, rel);
  }
}

async function assertHardLinked(tree: string): Promise<void> {
  const [a, b] = await Promise.all([lstat(join(tree, 'a/plain.txt')), lstat(join(tree, 'hard.txt'))]);
  assert.equal(a.ino, b.ino, 'a hard link stays one file');
}

function rumError(code: string, pattern: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof RumError, `not a RumError: ${String(err)}`);
    assert.equal(err.code, code);
    assert.match(err.message, pattern);
    return true;
  };
}

test('upload: a tree to a new name, then into an existing directory, kept exactly', async (t) => {
  const { session } = await guest(t);
  const { host, guest: g } = await sides(t);
  await makeTree(join(host, 'tree'));
  const seen: TransferProgress[] = [];

  const r = await upload(session, join(host, 'tree'), join(g, 'copy'), { onProgress: (p) => seen.push(p) });
  assert.equal(r.path, join(g, 'copy'));
  assert.deepEqual(r.warnings, []);
  await assertSameTree(join(g, 'copy'), join(host, 'tree'));
  await assertHardLinked(join(g, 'copy'));
  assert.ok(r.bytes > big.length);
  assert.equal(seen.at(-1)?.bytes, r.bytes, 'progress counts every byte');

  await mkdir(join(g, 'existing'));
  const into = await upload(session, join(host, 'tree'), `${join(g, 'existing')}/`);
  assert.equal(into.path, join(g, 'existing', 'tree'));
  await assertSameTree(join(g, 'existing', 'tree'), join(host, 'tree'));
});

test('upload: single files, to a new name and into a directory; the contents of "dir/."', async (t) => {
  const { session } = await guest(t);
  const { host, guest: g } = await sides(t);
  await makeTree(join(host, 'tree'));
  const seen: TransferProgress[] = [];
  await upload(session, join(host, 'tree', AWKWARD), join(g, `copy of ${AWKWARD}`), { onProgress: (p) => seen.push(p) });
  assert.equal(await readFile(join(g, `copy of ${AWKWARD}`), 'utf8'), 'awkward\n');
  assert.ok(seen.at(-1)?.total !== undefined, 'a file has a known total');

  await upload(session, join(host, 'tree', 'bin', 'run.sh'), g);
  await assertSameTree(join(g, 'run.sh'), join(host, 'tree', 'bin', 'run.sh'));
  await upload(session, join(host, 'tree', 'link'), g);
  assert.equal(await readlink(join(g, 'link')), 'bin/run.sh', 'a symlink goes as a symlink');

  await upload(session, join(host, 'tree', 'a', '.'), join(g, 'a-contents'));
  await assertSameTree(join(g, 'a-contents'), join(host, 'tree', 'a'));
  // an existing file is replaced, as cp does
  await writeFile(join(g, 'replace-me'), 'old');
  await upload(session, join(host, 'tree', 'a', 'plain.txt'), join(g, 'replace-me'));
  assert.equal(await readFile(join(g, 'replace-me'), 'utf8'), 'plain\n');
});

test('download: a tree to a new name, then into an existing directory, kept exactly', async (t) => {
  const { session } = await guest(t);
  const { host, guest: g } = await sides(t);
  await makeTree(join(g, 'tree'));
  const seen: TransferProgress[] = [];

  const r = await download(session, join(g, 'tree'), join(host, 'copy'), { onProgress: (p) => seen.push(p) });
  assert.equal(r.path, join(host, 'copy'));
  assert.deepEqual(r.warnings, []);
  await assertSameTree(join(host, 'copy'), join(g, 'tree'));
  await assertHardLinked(join(host, 'copy'));
  assert.equal(seen.at(-1)?.bytes, r.bytes);

  await mkdir(join(host, 'existing'));
  const into = await download(session, join(g, 'tree'), join(host, 'existing'));
  assert.equal(into.path, join(host, 'existing', 'tree'));
  await assertSameTree(join(host, 'existing', 'tree'), join(g, 'tree'));
});

test('download: single files, to a new name and into a directory; the contents of "dir/."', async (t) => {
  const { session } = await guest(t);
  const { host, guest: g } = await sides(t);
  await makeTree(join(g, 'tree'));
  await download(session, join(g, 'tree', AWKWARD), join(host, 'renamed'));
  await assertSameTree(join(host, 'renamed'), join(g, 'tree', AWKWARD));
  await download(session, join(g, 'tree', 'bin', 'run.sh'), host);
  await assertSameTree(join(host, 'run.sh'), join(g, 'tree', 'bin', 'run.sh'));
  await download(session, join(g, 'tree', '-dash'), host);
  assert.equal(await readFile(join(host, '-dash'), 'utf8'), 'not an option\n');
  await download(session, join(g, 'tree', 'abs-link'), host);
  assert.equal(await readlink(join(host, 'abs-link')), '/nonexistent/absolute/target', 'an absolute target is kept as written');
  await download(session, join(g, 'tree', 'a', '.'), join(host, 'a-contents'));
  await assertSameTree(join(host, 'a-contents'), join(g, 'tree', 'a'));
});

test('usage: exactly one side is the guest; NUL and newline are refused before any connection', async () => {
  await assert.rejects(cp(':/a', ':/b', {}), rumError('USAGE', /both paths start with ":"/));
  await assert.rejects(cp('./a', './b', {}), rumError('USAGE', /needs one guest path/));
  await assert.rejects(cp('./a\nb', ':/b', {}), rumError('USAGE', /newline/));
  await assert.rejects(cp(':/a\0', '.', {}), rumError('USAGE', /NUL/));
  assert.deepEqual(cpPlan('./dir', ':dir'), { direction: 'upload', host: './dir', guest: 'dir' });
  assert.deepEqual(cpPlan(':/var/log/syslog', '.'), { direction: 'download', host: '.', guest: '/var/log/syslog' });
  for (const err of [cpPlan.bind(null, ':a', ':b'), cpPlan.bind(null, 'a', 'b')])
    assert.throws(err, (e: unknown) => e instanceof RumError && e.hint !== undefined && e.hint.includes(':'));
});

test('errors name what is missing: host source, guest source, destination directory', async (t) => {
  const { session } = await guest(t);
  const { host, guest: g } = await sides(t);
  await assert.rejects(upload(session, join(host, 'no such thing'), g), rumError('FAILED', /no such thing: no such file or directory on the host/));
  await assert.rejects(download(session, join(g, 'gone.txt'), host), rumError('FAILED', /gone\.txt: no such file or directory in the guest/));
  await writeFile(join(host, 'f'), 'x');
  await mkdir(join(host, 'd'));
  await assert.rejects(upload(session, join(host, 'f'), join(g, 'missing', 'f')), rumError('FAILED', /missing: no such directory on the guest/));
  await writeFile(join(g, 'plain'), 'x');
  await assert.rejects(upload(session, join(host, 'd'), join(g, 'plain')), rumError('FAILED', /not a directory/));
  await assert.rejects(download(session, join(g, 'plain'), join(host, 'missing', 'f')), rumError('FAILED', /missing: no such directory on the host/));
  await assert.rejects(download(session, join(g, 'plain'), `${join(host, 'f')}/`), rumError('FAILED', /f\/: not a directory/));
  await assert.rejects(upload(session, join(host, 'f'), `${join(g, 'new')}/`), rumError('FAILED', /new\/: no such directory on the guest/));
  await upload(session, join(host, 'd'), `${join(g, 'new-dir')}/`); // a directory may be named so
  assert.ok((await lstat(join(g, 'new-dir'))).isDirectory());
});

test("the guest tar's failure is an error with its last meaningful stderr line", async (t) => {
  const { session } = await guest(t, {
    respond: (cmd) =>
      cmd.startsWith('tar ')
        ? { code: 2, stderr: 'tar: tree/x: Cannot open: Permission denied\ntar: Exiting with failure status due to previous errors\n' }
        : undefined,
  });
  const { host, guest: g } = await sides(t);
  await writeFile(join(g, 'x'), 'x');
  await writeFile(join(host, 'x'), 'x');
  const denied = rumError('FAILED', /tar in the guest could not \w+ \(exit 2\): tar: tree\/x: Cannot open: Permission denied$/);
  await assert.rejects(download(session, join(g, 'x'), join(host, 'y')), denied);
  await assert.rejects(upload(session, join(host, 'x'), join(g, 'y')), denied);
});

test('a guest tar stream that reaches outside the destination is refused', async (t) => {
  // What a hostile guest could send: a symlink to a host directory, then a file "inside" it (a
  // plain unpacker writes through the link); or a member that is not under the name asked for.
  const { host, guest: g } = await sides(t);
  const outside = join(host, 'outside');
  await mkdir(outside);
  await mkdir(join(g, 'a', 'evil', 'x'), { recursive: true });
  await symlink(outside, join(g, 'a', 'evil', 'x', 'esc'));
  await mkdir(join(g, 'b', 'evil', 'x', 'esc'), { recursive: true });
  await writeFile(join(g, 'b', 'evil', 'x', 'esc', 'planted'), 'gotcha');
  await writeFile(join(g, 'b', 'stray'), 'stray');
  const links = await tarOf(join(g, 'a'), ['evil', 'evil/x', 'evil/x/esc']);
  const through = Buffer.concat([withoutEnd(links), await tarOf(join(g, 'b'), ['evil/x/esc/planted'])]);
  const stray = Buffer.concat([withoutEnd(links), await tarOf(join(g, 'b'), ['stray'])]);
  let answer = through;
  const { session } = await guest(t, { respond: (cmd) => (cmd.startsWith('tar ') ? { code: 0, stdout: answer.toString('latin1') } : undefined) });
  for (const archive of [through, stray]) {
    assert.ok(archive.every((b) => b < 0x80), 'the scripted answer is sent as UTF-8 text, so the archive must be ASCII');
    answer = archive;
    await assert.rejects(download(session, join(g, 'a', 'evil'), join(host, 'dest')), rumError('FAILED', /unexpected member "(evil\/x\/esc\/planted|stray)"/));
    assert.deepEqual(await readdir(outside), [], 'nothing was written outside');
  }
});

/** A tar of exactly `paths` under `cwd` (no recursion), as node-tar writes it. */
async function tarOf(cwd: string, paths: string[]): Promise<Buffer> {
  const pack = new Pack({ cwd, portable: true, noDirRecurse: true });
  const chunks: Buffer[] = [];
  pack.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<void>((resolve) => pack.on('end', () => resolve()));
  for (const p of paths) pack.add(p);
  pack.end();
  await done;
  return Buffer.concat(chunks);
}

/** An archive without the zero blocks that end it, so another can follow. */
function withoutEnd(archive: Buffer): Buffer {
  let end = archive.length;
  while (end >= 512 && archive.subarray(end - 512, end).every((b) => b === 0)) end -= 512;
  return archive.subarray(0, end);
}

test('paths: home-relative guest spellings, and renaming the first part of a member', () => {
  assert.equal(guestPath(''), '.');
  assert.equal(guestPath('~'), '.');
  assert.equal(guestPath('~/src/app'), 'src/app');
  assert.equal(guestPath('/etc/hosts'), '/etc/hosts');
  assert.equal(rebase('tree/a/b', 'tree', 'copy'), 'copy/a/b');
  assert.equal(rebase('tree/', 'tree', 'copy'), 'copy/');
  assert.equal(rebase('./a/', '.', 'copy'), 'copy/a/');
  assert.equal(rebase('./', '.', '.'), './');
  assert.equal(rebase('tree/x', 'tree', '.'), 'x');
  assert.equal(rebase('other/x', 'tree', 'copy'), undefined);
  assert.equal(rebase('tree/../x', 'tree', 'copy'), undefined);
  assert.equal(rebase('/etc/passwd', '.', 'copy'), undefined);
});
