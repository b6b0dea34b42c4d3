// The shared SSH login (src/ssh/control.ts): real master processes against a real SSH server on
// 127.0.0.1 (test/helpers/ssh-server.ts). Masters end themselves: with the server's connection,
// or after a short persist time; every wait here is bounded.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import { SshError, type SshTarget } from '../../src/ssh/connect.js';
import { controlSession } from '../../src/ssh/control.js';
import { generateKeyPair } from '../../src/ssh/keys.js';
import { generateEd25519, TestSshServer } from '../helpers/ssh-server.js';

const client = await generateKeyPair('rum-test-client');

async function setup(t: TestContext): Promise<{ server: TestSshServer; target: SshTarget; socket: string }> {
  const server = await TestSshServer.start({ clientPublicKey: client.public });
  const dir = await mkdtemp(join(tmpdir(), 'rum-ctl-'));
  // The server's end closes the master's connection, so the master ends; then the directory goes.
  t.after(async () => {
    await server.close();
    await gone(join(dir, 'ssh.sock'));
    await rm(dir, { recursive: true, force: true });
  });
  const target = { host: '127.0.0.1', port: server.port, user: 'rum', privateKey: client.private, hostKey: server.hostKey.public };
  return { server, target, socket: join(dir, 'ssh.sock') };
}

/** Waits (bounded) for a master to remove its socket. */
async function gone(path: string): Promise<boolean> {
  for (let i = 0; i < 100 && existsSync(path); i++) await sleep(50);
  return !existsSync(path);
}

function collect(): { stream: Writable; text: () => string; bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  const stream = new PassThrough();
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString('utf8'), bytes: () => Buffer.concat(chunks) };
}

test('commands from separate sessions share one login; output, stdin and exit codes pass through', async (t) => {
  const { server, target, socket } = await setup(t);
  const first = await controlSession(socket, target, 30_000);
  assert.ok(first, 'a master serves');
  assert.equal(statSync(socket).mode & 0o077, 0, 'only this user may use the login');
  const out = collect();
  const err = collect();
  assert.deepEqual(await first.exec('echo out1; echo err1 >&2; echo out2; exit 3', { stdout: out.stream, stderr: err.stream }), { code: 3 });
  assert.equal(out.text(), 'out1\nout2\n');
  assert.equal(err.text(), 'err1\n');

  // A later rum process finds the master through the socket alone.
  const second = await controlSession(socket, target, 30_000);
  assert.deepEqual(await second!.execText('cat; printf e >&2', { stdin: 'from stdin' }), { code: 0, stdout: 'from stdin', stderr: 'e' });
  assert.deepEqual(await second!.execText('wc -c', { stdin: Readable.from([Buffer.alloc(3 * 2 ** 20, 7), Buffer.from('x')]) }), {
    code: 0,
    stdout: `${3 * 2 ** 20 + 1}\n`,
    stderr: '',
  });
  const killed = await second!.execText('kill -TERM $$');
  assert.equal(killed.code, null);
  assert.equal(killed.signal, 'SIGTERM');
  assert.equal(server.logins, 1, 'one login served every command');
});

test('large output reaches a slow reader whole, in order', async (t) => {
  const { target, socket } = await setup(t);
  const s = await controlSession(socket, target, 30_000);
  const chunks: Buffer[] = [];
  const slow = new Writable({
    highWaterMark: 1024,
    write(c: Buffer, _e, cb) {
      chunks.push(c);
      setTimeout(cb, chunks.length % 50 === 0 ? 5 : 0);
    },
  });
  const r = await s!.exec('head -c 8388608 /dev/zero | tr "\\0" "a"; echo; echo done', { stdout: slow });
  assert.deepEqual(r, { code: 0 });
  await finished(slow.end()); // what the command wrote is queued in the writable, in order
  const all = Buffer.concat(chunks);
  assert.equal(all.length, 8 * 2 ** 20 + 6);
  assert.equal(createHash('sha256').update(all).digest('hex'), createHash('sha256').update(Buffer.concat([Buffer.alloc(8 * 2 ** 20, 'a'), Buffer.from('\ndone\n')])).digest('hex'));
});

test('concurrent first commands start one login between them', async (t) => {
  const { server, target, socket } = await setup(t);
  const sessions = await Promise.all([1, 2, 3, 4].map(() => controlSession(socket, target, 30_000)));
  const rs = await Promise.all(sessions.map((s, i) => s!.execText(`echo ${i}`)));
  assert.deepEqual(rs.map((r) => r.stdout), ['0\n', '1\n', '2\n', '3\n']);
  assert.equal(server.logins, 1);
});

test('the master ends with its connection and removes its socket; the next command starts a new one', async (t) => {
  const { server, target, socket } = await setup(t);
  const s = await controlSession(socket, target, 30_000);
  assert.equal((await s!.execText('true')).code, 0);
  // The guest going away (a reboot, down, --reset) ends the master: a replaced host key is never
  // served by an old login.
  server.dropConnections();
  assert.ok(await gone(socket), 'the master removed its socket');
  const again = await controlSession(socket, target, 30_000);
  assert.equal((await again!.execText('echo back')).stdout, 'back\n');
  assert.equal(server.logins, 2);
});

test('an idle master ends after its persist time', async (t) => {
  const { target, socket } = await setup(t);
  const s = await controlSession(socket, target, 300);
  assert.equal((await s!.execText('true')).code, 0);
  assert.ok(await gone(socket));
});

test('a master that cannot log in reports why, like a direct connection, and leaves no socket', async (t) => {
  const { target, socket } = await setup(t);
  const other = generateEd25519('not-the-guest');
  await assert.rejects(controlSession(socket, { ...target, hostKey: other.public }, 30_000), (e: unknown) => {
    assert.ok(e instanceof SshError);
    assert.equal(e.kind, 'host-key-mismatch');
    assert.match(e.message, /host key mismatch/);
    return true;
  });
  assert.ok(await gone(socket));
});

test('a socket path too long for the kernel means no sharing, not an error', async (t) => {
  const { target } = await setup(t);
  assert.equal(await controlSession(`/tmp/${'x'.repeat(120)}/ssh.sock`, target, 1000), undefined);
});

test('aborting a command ends it in the guest and leaves the master serving', async (t) => {
  const { server, target, socket } = await setup(t);
  const s = await controlSession(socket, target, 30_000);
  const ac = new AbortController();
  const running = s!.exec('sleep 30', { signal: ac.signal });
  await sleep(300);
  const t0 = Date.now();
  ac.abort(new Error('stop'));
  await assert.rejects(running, /stop/);
  assert.ok(Date.now() - t0 < 2000);
  for (let i = 0; i < 40 && server.children.size > 0; i++) await sleep(50);
  assert.equal(server.children.size, 0, 'the command ended');
  assert.equal((await s!.execText('echo still')).stdout, 'still\n');
});

test('a socket left by a master that was killed is replaced, not trusted', async (t) => {
  const { server, target, socket } = await setup(t);
  // A process that listens on the path and is then SIGKILLed: the file stays, nothing answers.
  const holder = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socket)}, () => console.log('up'))`], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  await new Promise((r) => holder.stdout!.once('data', r));
  holder.kill('SIGKILL');
  await new Promise((r) => holder.once('close', r));
  assert.ok(existsSync(socket), 'the dead listener left its socket file');
  const s = await controlSession(socket, target, 30_000);
  assert.equal((await s!.execText('echo fresh')).stdout, 'fresh\n');
  assert.equal(server.logins, 1);
});
