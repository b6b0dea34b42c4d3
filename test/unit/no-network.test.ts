// The unit tier's network guard (test/helpers/no-network.ts): every unit test file loads it first;
// it refuses the network, in the test's process and in node processes the test starts, and lets
// loopback and unix sockets through.
import { isLoopback, takeViolations } from '../helpers/no-network.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, connect, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { execa } from 'execa';
import { TestHttpServer } from '../helpers/http-server.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const guard = new URL('../helpers/no-network.js', import.meta.url).href;
const probe = fileURLToPath(new URL('../helpers/no-network-probe.js', import.meta.url));
// The refusals are shown in a network namespace of their own: a guard that failed would find no
// network there either.
const isolated = spawnSync('unshare', ['-n', 'true']).status === 0;
const needsUnshare = isolated ? {} : { skip: '`unshare -n` is not allowed here (needs root or user namespaces)' };

test('every unit test file loads the guard before anything else', async () => {
  const files = (await readdir(here)).filter((f) => f.endsWith('.test.js'));
  assert.ok(files.length > 10, `found ${files.length} test files in ${here}`);
  const missing: string[] = [];
  for (const f of files) {
    const first = /^import\s[^;]*?['"]([^'"]+)['"]/m.exec(await readFile(join(here, f), 'utf8'));
    if (first?.[1] !== '../helpers/no-network.js') missing.push(f);
  }
  assert.deepEqual(missing, [], "these unit test files must begin with `import '../helpers/no-network.js';`");
});

test('loopback addresses and the name localhost pass; other addresses and names do not', () => {
  for (const h of ['127.0.0.1', '127.8.9.1', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost', 'LocalHost'])
    assert.equal(isLoopback(h), true, h);
  for (const h of ['10.0.2.2', '192.168.122.1', '172.16.0.1', '1.1.1.1', '::ffff:10.0.2.2', '2001:db8::1', 'fe80::1%eth0', '0.0.0.0', '127.1', 'example.org', 'foo.localhost', ''])
    assert.equal(isLoopback(h), false, h);
});

test('a 127.0.0.1 server, a unix socket and a lookup of localhost or of an address still work', async (t) => {
  const srv = await TestHttpServer.start();
  t.after(() => srv.close());
  srv.file('/x', { body: 'hello' });
  assert.equal(await (await fetch(srv.url('/x'))).text(), 'hello');

  const dir = await mkdtemp(join(tmpdir(), 'rum-no-network-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const sock = join(dir, 's.sock');
  const unix: Server = createServer((s) => s.end('unix'));
  await new Promise<void>((resolve) => unix.listen(sock, resolve));
  t.after(() => unix.close());
  const got = await new Promise<string>((resolve, reject) => {
    let data = '';
    connect(sock).on('data', (d) => (data += d)).on('end', () => resolve(data)).on('error', reject);
  });
  assert.equal(got, 'unix');

  assert.match((await lookup('localhost')).address, /^(127\.|::1$)/);
  assert.equal((await lookup('0.0.0.0')).address, '0.0.0.0'); // no question to a server: listen() asks it
  assert.deepEqual(takeViolations(), []);
});

test('a node child refuses 10.0.2.2:80, example.org and the rest, and reports to this process', needsUnshare, async () => {
  // NODE_OPTIONS as this process was given it by the guard: the probe does not import it.
  const r = await execa('unshare', ['-n', process.execPath, probe], { reject: false, timeout: 60_000 });
  assert.equal(r.exitCode, 0, r.stderr);
  const outcomes = JSON.parse(r.stdout) as Record<string, string>;
  const refused = (what: RegExp) => new RegExp(`no-network guard: ${what.source} refused`);
  for (const [name, said] of Object.entries(outcomes)) {
    const what = /lookup|resolve|Resolver/.test(name) ? /dns\.[\w.#]+\("example\.org"\)/
      : name === 'fetch' ? /a connection to cloud\.debian\.org:\d*/
      : name === 'dgram send' ? /a UDP datagram to 10\.0\.2\.2:53/
      : name === 'tls.connect' ? /a connection to 10\.0\.2\.2:443/
      : /a connection to 10\.0\.2\.2:80/;
    assert.match(said, refused(what), name);
  }
  assert.equal(Object.keys(outcomes).length, 12);
  // Each refusal was reported here too: a refused error the code under test swallows still fails the file.
  const reported = takeViolations();
  assert.equal(reported.length, 12, reported.join('\n'));
  assert.ok(reported.some((m) => m.includes('a connection to 10.0.2.2:80 refused')));
  assert.ok(reported.some((m) => m.includes('dns.lookup("example.org") refused')));
});

test('a refusal the code caught still fails the test file at exit', needsUnshare, async () => {
  const script = `import ${JSON.stringify(guard)}; import net from 'node:net'; try { net.connect(80, '10.0.2.2'); } catch {}`;
  const env = { ...process.env, NODE_OPTIONS: '', RUM_NO_NETWORK_LOG: undefined }; // its own test file, as it were
  const r = await execa('unshare', ['-n', process.execPath, '--input-type=module', '-e', script], { env, extendEnv: false, reject: false, timeout: 60_000 });
  assert.equal(r.exitCode, 1, r.stderr);
  assert.match(r.stderr, /tried to reach the network 1 time\(s\):\n {2}no-network guard: a connection to 10\.0\.2\.2:80 refused/);
});
