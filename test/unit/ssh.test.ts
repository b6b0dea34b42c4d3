// The SSH layer against a real SSH server (test/helpers/ssh-server.ts) on 127.0.0.1, and the real
// OpenSSH client against the same server using rum's argv, known_hosts and config block.
// Nothing here contacts any address but 127.0.0.1. Every wait is bounded by a short timeout.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { RumError } from '../../src/errors.js';
import { connect, fingerprint, parseHostKey, SessionPool, SshError, waitReady, type ReadyStage, type SshTarget } from '../../src/ssh/connect.js';
import { generateKeyPair } from '../../src/ssh/keys.js';
import { knownHostsText, writeKnownHosts } from '../../src/ssh/known-hosts.js';
import { execOpenSsh, opensshArgs, quoteConfigValue, shellQuote, sshConfigBlock, type OpenSshTarget } from '../../src/ssh/openssh.js';
import { freePort, generateEd25519, TestSshServer, type TestSshServerOptions } from '../helpers/ssh-server.js';

const client = await generateKeyPair('rum-test-client');

async function serve(t: TestContext, opts: Partial<TestSshServerOptions> = {}): Promise<TestSshServer> {
  const server = await TestSshServer.start({ clientPublicKey: client.public, ...opts });
  t.after(() => server.close());
  return server;
}

function targetFor(server: TestSshServer, over: Partial<SshTarget> = {}): SshTarget {
  return { host: '127.0.0.1', port: server.port, user: 'rum', privateKey: client.private, hostKey: server.hostKey.public, ...over };
}

function sink(): { stream: PassThrough; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new PassThrough();
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

/** A directory whose name has a space and a percent sign, as a user's XDG path might. */
async function awkwardDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rum ssh %test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('exec streams stdout and stderr separately, returns the exit status, and shares one login', async (t) => {
  const server = await serve(t);
  const session = await connect(targetFor(server));
  t.after(() => session.close());
  const out = sink();
  const err = sink();
  const r = await session.exec('echo out1; echo err1 >&2; echo out2; exit 3', { stdout: out.stream, stderr: err.stream });
  assert.deepEqual(r, { code: 3 });
  assert.equal(out.text(), 'out1\nout2\n');
  assert.equal(err.text(), 'err1\n');
  assert.deepEqual(await session.execText('printf a; printf b >&2'), { code: 0, stdout: 'a', stderr: 'b' });
  const killed = await session.execText('kill -TERM $$');
  assert.equal(killed.code, null);
  assert.equal(killed.signal, 'SIGTERM');
  assert.equal(server.logins, 1, 'every exec ran on the one connection');
  await session.close();
  assert.ok(session.closed);
  await assert.rejects(session.execText('true'), (e: unknown) => e instanceof SshError && e.kind === 'connection-lost');
});

test('stdin is forwarded: a string, a Buffer and a stream, each ending with EOF', async (t) => {
  const server = await serve(t);
  const session = await connect(targetFor(server));
  t.after(() => session.close());
  assert.equal((await session.execText('cat', { stdin: 'hello\n' })).stdout, 'hello\n');
  assert.equal((await session.execText('wc -c', { stdin: Buffer.alloc(100_000, 1) })).stdout.trim(), '100000');
  const stream = Readable.from([Buffer.from('a\n'), Buffer.from('b\n')]);
  assert.deepEqual(await session.execText('sort -r', { stdin: stream }), { code: 0, stdout: 'b\na\n', stderr: '' });
  // no stdin: the command reads EOF rather than waiting
  assert.equal((await session.execText('cat; echo eof')).stdout, 'eof\n');
});

test('an aborted exec rejects with the reason and the command is signalled', async (t) => {
  const server = await serve(t);
  const session = await connect(targetFor(server));
  t.after(() => session.close());
  const ac = new AbortController();
  const running = session.exec('sleep 30');
  void running.catch(() => {});
  const aborted = session.exec('sleep 30', { signal: ac.signal });
  setTimeout(() => ac.abort(new Error('stop')), 100);
  await assert.rejects(aborted, /stop/);
  // the session is still usable after one channel was torn down
  assert.equal((await session.execText('echo still')).stdout, 'still\n');
});

test('a wrong pinned host key is refused at once: mismatch named, both fingerprints, known_hosts in the hint', async (t) => {
  const server = await serve(t);
  const other = generateEd25519('someone-else');
  await assert.rejects(connect(targetFor(server, { hostKey: other.public })), (err: unknown) => {
    assert.ok(err instanceof SshError, String(err));
    assert.equal(err.code, 'SSH');
    assert.equal(err.kind, 'host-key-mismatch');
    assert.match(err.message, /^host key mismatch at 127\.0\.0\.1:\d+: the guest offered SHA256:\S+, but SHA256:\S+ is pinned$/);
    assert.ok(err.message.includes(fingerprint(parseHostKey(server.hostKey.public).blob)));
    assert.ok(err.message.includes(fingerprint(parseHostKey(other.public).blob)));
    assert.match(err.hint ?? '', /known_hosts/);
    assert.match(err.hint ?? '', /replaced/);
    return true;
  });
  assert.equal(server.logins, 0);

  // waitReady does not retry it, however long it was given
  const stages: ReadyStage[] = [];
  const before = server.connections;
  await assert.rejects(
    waitReady(targetFor(server, { hostKey: other.public }), { timeoutMs: 20_000, retryDelayMs: 10, onStage: (s) => stages.push(s) }),
    (err: unknown) => err instanceof SshError && err.kind === 'host-key-mismatch',
  );
  assert.equal(server.connections - before, 1, 'one connection, no retry');
  assert.deepEqual(stages, ['port', 'host key']);
});

test('a pin that is not an ed25519 public key fails before connecting', async () => {
  for (const bad of ['', 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ', 'ssh-ed25519 bm90IGEga2V5']) {
    await assert.rejects(
      waitReady({ port: 1, user: 'rum', privateKey: client.private, hostKey: bad, host: '127.0.0.1' }, { timeoutMs: 5000 }),
      (err: unknown) => err instanceof SshError && err.kind === 'bad-key',
    );
  }
});

test('waitReady waits through every stage of a boot: no address, nothing listening, TCP dropped, login refused', async (t) => {
  const port = await freePort();
  const hostKey = generateEd25519('guest-host');
  let server: TestSshServer | undefined;
  t.after(() => server?.close());
  // The guest's sshd appears only after a while, then misbehaves as a booting guest does.
  const booting = sleep(300).then(async () => {
    server = await TestSshServer.start({
      clientPublicKey: client.public,
      port,
      hostKey,
      dropFirst: 2, // QEMU's forwarded port accepts before sshd is up
      refuseLoginFirst: 1, // the user does not exist yet
      respond: (cmd) => (cmd === 'cloud-init status --wait' ? { stdout: 'status: done\n', code: 0 } : undefined),
    });
  });
  let asked = 0;
  const stages: [ReadyStage, string | undefined][] = [];
  const r = await waitReady(
    { port, user: 'rum', privateKey: client.private, hostKey: hostKey.public },
    {
      timeoutMs: 20_000,
      retryDelayMs: 20,
      command: 'cloud-init status --wait',
      getAddress: async () => (++asked < 3 ? undefined : '127.0.0.1'),
      onStage: (s, d) => stages.push([s, d]),
    },
  );
  t.after(() => r.session.close());
  await booting;
  assert.deepEqual(stages, [
    ['address', undefined],
    ['port', `127.0.0.1:${port}`],
    ['host key', undefined],
    ['login', 'rum'],
    ['cloud-init', 'cloud-init status --wait'],
  ]);
  assert.ok(asked >= 3, 'the address is asked for until there is one (and again while nothing answers there)');
  assert.equal(r.session.target.host, '127.0.0.1');
  assert.equal(r.command?.stdout, 'status: done\n');
  assert.equal(server!.connections, 4, '2 dropped, 1 refused login, 1 success');
  assert.ok(r.attempts >= 6, `attempts: ${r.attempts}`);
  // the session stays open for more commands on the same login
  assert.equal((await r.session.execText('echo reused')).stdout, 'reused\n');
  assert.equal(server!.logins, 1);
});

test('waitReady times out naming the stage and the last error, within its count and time bounds', async (t) => {
  const closed = await freePort();
  await assert.rejects(
    waitReady({ host: '127.0.0.1', port: closed, user: 'rum', privateKey: client.private, hostKey: client.public }, { timeoutMs: 600, retryDelayMs: 20 }),
    (err: unknown) => {
      assert.ok(err instanceof SshError, String(err));
      assert.equal(err.code, 'SSH');
      assert.match(err.message, /^timed out after [\d.]+ s waiting for port: connect ECONNREFUSED 127\.0\.0\.1:\d+$/);
      assert.match(err.hint ?? '', /rum logs --console/);
      return true;
    },
  );

  const dropping = await serve(t, { dropFirst: 1_000_000 });
  await assert.rejects(waitReady(targetFor(dropping), { timeoutMs: 600, retryDelayMs: 20 }), (err: unknown) => {
    assert.ok(err instanceof SshError, String(err));
    assert.match(err.message, /waiting for host key: 127\.0\.0\.1:\d+: the connection closed before the SSH handshake$/);
    return true;
  });

  const noUser = await serve(t, { refuseLoginFirst: 1_000_000 });
  await assert.rejects(waitReady(targetFor(noUser), { timeoutMs: 10_000, retryDelayMs: 10, maxAttempts: 3 }), (err: unknown) => {
    assert.ok(err instanceof SshError, String(err));
    assert.match(err.message, /^gave up after 3 attempts \([\d.]+ s\) waiting for login: 127\.0\.0\.1:\d+: the guest refused the key for user "rum"$/);
    return true;
  });
  assert.equal(noUser.connections, 3);

  const slow = await serve(t, { respond: () => undefined });
  await assert.rejects(waitReady(targetFor(slow), { timeoutMs: 800, retryDelayMs: 20, command: 'sleep 30' }), (err: unknown) => {
    assert.ok(err instanceof SshError, String(err));
    assert.match(err.message, /waiting for cloud-init: "sleep 30" was still running$/);
    return true;
  });
});

test('waitReady stops when its signal is aborted, with the caller\'s reason', async () => {
  const closed = await freePort();
  const ac = new AbortController();
  setTimeout(() => ac.abort(new Error('interrupted by test')), 150);
  await assert.rejects(
    waitReady({ host: '127.0.0.1', port: closed, user: 'rum', privateKey: client.private, hostKey: client.public }, { timeoutMs: 20_000, retryDelayMs: 50, signal: ac.signal }),
    /interrupted by test/,
  );
});

test('waitReady fails at once when the command fails, with its last line of output', async (t) => {
  const server = await serve(t, { respond: () => ({ stdout: 'status: error\n', stderr: 'module failed\n', code: 1 }) });
  await assert.rejects(waitReady(targetFor(server), { timeoutMs: 10_000, retryDelayMs: 10, command: 'cloud-init status --wait' }), (err: unknown) => {
    assert.ok(err instanceof SshError, String(err));
    assert.equal(err.kind, 'command-failed');
    assert.equal(err.message, '"cloud-init status --wait" exited with status 1: module failed');
    return true;
  });
  assert.equal(server.commands.length, 1, 'not retried');
  const degraded = await serve(t, { respond: () => ({ stdout: 'status: done\n', code: 2 }) });
  const r = await waitReady(targetFor(degraded), { timeoutMs: 10_000, command: 'cloud-init status --wait', okExitCodes: [0, 2] });
  await r.session.close();
  assert.equal(r.command?.code, 2);
});

test('SessionPool reuses one login per target and reconnects once it is closed', async (t) => {
  const server = await serve(t);
  const pool = new SessionPool();
  t.after(() => pool.closeAll());
  const [a, b] = await Promise.all([pool.get(targetFor(server)), pool.get(targetFor(server))]);
  assert.equal(a, b);
  assert.equal((await a.execText('echo 1')).stdout, '1\n');
  await a.close();
  const c = await pool.get(targetFor(server));
  assert.notEqual(c, a);
  assert.equal((await c.execText('echo 2')).stdout, '2\n');
  assert.equal(server.logins, 2);
  await pool.closeAll();
  assert.ok(c.closed);
});

test('known_hosts: [host]:port and alias lines, plain host on port 22, only safe names', async (t) => {
  const key = generateEd25519('comment is dropped');
  const [type, blob] = key.public.split(' ');
  assert.equal(
    knownHostsText({ host: '127.0.0.1', port: 2222, alias: 'rum-x', hostKey: key.public }),
    `[127.0.0.1]:2222 ${type} ${blob}\nrum-x ${type} ${blob}\n`,
  );
  assert.equal(knownHostsText({ host: '192.168.122.5', port: 22, alias: 'rum-x', hostKey: key.public }).split('\n')[0], `192.168.122.5 ${type} ${blob}`);
  assert.throws(() => knownHostsText({ host: '127.0.0.1', port: 22, alias: 'rum-*', hostKey: key.public }), RumError);
  assert.throws(() => knownHostsText({ host: 'a b', port: 22, alias: 'rum-x', hostKey: key.public }), RumError);
  assert.throws(() => knownHostsText({ host: '127.0.0.1', port: 22, alias: 'rum-x', hostKey: 'ssh-rsa AAAA' }), RumError);
  const dir = await awkwardDir(t);
  const file = join(dir, 'known_hosts');
  await writeKnownHosts(file, { host: '127.0.0.1', port: 2222, alias: 'rum-x', hostKey: key.public });
  assert.equal(await readFile(file, 'utf8'), knownHostsText({ host: '127.0.0.1', port: 2222, alias: 'rum-x', hostKey: key.public }));
});

/** The client key and known_hosts on disk, in a directory with a space and a % in its name. */
async function openSshFiles(t: TestContext, server: TestSshServer): Promise<OpenSshTarget> {
  const dir = await awkwardDir(t);
  const keyPath = join(dir, 'id_ed25519');
  await writeFile(keyPath, client.private.endsWith('\n') ? client.private : `${client.private}\n`, { mode: 0o600 });
  await chmod(keyPath, 0o600);
  const knownHostsPath = join(dir, 'known_hosts');
  await writeKnownHosts(knownHostsPath, { host: '127.0.0.1', port: server.port, alias: 'rum-x', hostKey: server.hostKey.public });
  return { host: '127.0.0.1', port: server.port, user: 'rum', keyPath, knownHostsPath, alias: 'rum-x' };
}

// -F /dev/null: the user's own ~/.ssh/config stays out of the test. BatchMode: never a prompt.
const isolated = ['-F', '/dev/null', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5'];

test('the real OpenSSH client logs in with opensshArgs and the written known_hosts', async (t) => {
  const server = await serve(t);
  const target = await openSshFiles(t, server);
  const args = opensshArgs(target, ['echo', shellQuote('it is ok')]);
  assert.ok(!args.join(' ').includes('StrictHostKeyChecking=no'));
  const ok = await execa('ssh', [...isolated, ...args], { stdin: 'ignore', timeout: 15_000, reject: false });
  assert.equal(ok.exitCode, 0, ok.stderr);
  assert.equal(ok.stdout, 'it is ok');
  assert.deepEqual(server.commands, ["echo 'it is ok'"]);

  // the same files against a server with another host key: refused, nothing run
  const impostor = await serve(t);
  const refused = await execa('ssh', [...isolated, ...opensshArgs({ ...target, port: impostor.port }, ['echo', 'no'])], {
    stdin: 'ignore',
    timeout: 15_000,
    reject: false,
  });
  assert.equal(refused.exitCode, 255);
  assert.match(refused.stderr, /host key/i);
  assert.deepEqual(impostor.commands, []);
});

test('execOpenSsh returns ssh\'s exit status, and a missing ssh is TOOL_MISSING', async (t) => {
  const server = await serve(t);
  const target = await openSshFiles(t, server);
  assert.equal(await execOpenSsh(['-n', ...isolated, ...opensshArgs(target, ['exit', '7'])]), 7);
  await assert.rejects(execOpenSsh([], { bin: '/nonexistent-rum-test/ssh' }), (err: unknown) => err instanceof RumError && err.code === 'TOOL_MISSING');
});

test('ssh -G accepts the sshConfigBlock and resolves it to the same settings', async (t) => {
  const server = await serve(t);
  const target = await openSshFiles(t, server);
  const block = sshConfigBlock(target);
  assert.doesNotMatch(block, /StrictHostKeyChecking\s+no/i);
  const config = join(await awkwardDir(t), 'config');
  await writeFile(config, block);
  const g = await execa('ssh', ['-F', config, '-G', 'rum-x'], { stdin: 'ignore', timeout: 15_000 });
  const seen = new Map<string, string[]>();
  for (const line of g.stdout.split('\n')) {
    const i = line.indexOf(' ');
    const k = line.slice(0, i);
    seen.set(k, [...(seen.get(k) ?? []), line.slice(i + 1)]);
  }
  assert.deepEqual(seen.get('hostname'), ['127.0.0.1']);
  assert.deepEqual(seen.get('port'), [String(server.port)]);
  assert.deepEqual(seen.get('user'), ['rum']);
  assert.deepEqual(seen.get('stricthostkeychecking'), ['true']);
  assert.deepEqual(seen.get('hostkeyalias'), ['rum-x']);
  assert.deepEqual(seen.get('identitiesonly'), ['yes']);
  assert.deepEqual(seen.get('globalknownhostsfile'), ['/dev/null']);
  // ssh -G prints each path with the %% escape undone or as written, depending on the option
  const either = (p: string) => [p, p.replace(/%/g, '%%')];
  assert.ok(either(target.keyPath).includes(seen.get('identityfile')?.[0] ?? ''), String(seen.get('identityfile')));
  assert.ok(either(target.knownHostsPath).includes(seen.get('userknownhostsfile')?.[0] ?? ''), String(seen.get('userknownhostsfile')));
  assert.equal(seen.get('identityfile')?.length, 1);
  assert.equal(seen.get('userknownhostsfile')?.length, 1);

  // and the real client logs in through that block
  const ok = await execa('ssh', ['-F', config, '-o', 'BatchMode=yes', 'rum-x', 'echo', 'ok'], { stdin: 'ignore', timeout: 15_000, reject: false });
  assert.equal(ok.exitCode, 0, ok.stderr);
  assert.equal(ok.stdout, 'ok');
});

test('config values are quoted for ssh_config; shell words for a POSIX shell', () => {
  assert.equal(quoteConfigValue('/plain/path'), '/plain/path');
  assert.equal(quoteConfigValue('/a b/c'), '"/a b/c"');
  assert.equal(quoteConfigValue('/a"b\\c'), '"/a\\"b\\\\c"');
  assert.equal(shellQuote('plain'), 'plain');
  assert.equal(shellQuote("it's"), "'it'\\''s'");
  assert.throws(() => opensshArgs({ host: '127.0.0.1', port: 22, user: 'rum', keyPath: 'relative', knownHostsPath: '/k', alias: 'rum-x' }), RumError);
  assert.throws(() => opensshArgs({ host: '127.0.0.1', port: 22, user: 'rum', keyPath: '/k/${HOME}', knownHostsPath: '/k', alias: 'rum-x' }), RumError);
  assert.throws(() => sshConfigBlock({ host: '-oProxyCommand=x', port: 22, user: 'rum', keyPath: '/k', knownHostsPath: '/k', alias: 'rum-x' }), RumError);
});
