// NODE_EXTRA_CA_CERTS and rum's launcher: bin/rum, run as a program, keeps Node
// from parsing those certificates at start-up, yet an https download still trusts them. A local
// CA and an https server on 127.0.0.1; rum runs as a user runs it, by its path.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { takeDeferredCa } from '../../src/net/extra-ca.js';
import { TestHttpServer } from '../helpers/http-server.js';

const rum = fileURLToPath(new URL('../../../bin/rum', import.meta.url));

/** A CA, and a certificate for 127.0.0.1 signed by it, made by openssl. */
function makeCa(dir: string): { ca: string; key: string; cert: string } {
  const o = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  o(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=rum test CA']);
  o(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  writeFileSync(join(dir, 'san.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  o(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.cnf']);
  const r = (f: string) => readFileSync(join(dir, f), 'utf8');
  return { ca: join(dir, 'ca.pem'), key: r('server.key'), cert: r('server.pem') };
}

async function setup(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'rum-ca-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { ca, key, cert } = makeCa(dir);
  const server = await TestHttpServer.start({ tls: { key, cert } });
  t.after(() => server.close());
  const image = Buffer.alloc(2 ** 20, 7); // a raw disk to rum: 1 MiB with a boot signature
  image.writeUInt16BE(0x55aa, 510);
  server.file('/disk.img', { body: image });
  const proj = join(dir, 'proj');
  execFileSync('mkdir', [proj]);
  const sha = createHash('sha256').update(image).digest('hex');
  writeFileSync(join(proj, 'rum.yaml'), `name: ca-test\nimage:\n  base: ${server.url('/disk.img')}\n  checksum: sha256:${sha}\n`);
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_DATA_HOME: join(dir, 'data'), XDG_CACHE_HOME: join(dir, 'cache'), NO_COLOR: '1' };
  delete env.NODE_EXTRA_CA_CERTS;
  // Asynchronous: the server answers from this process.
  const run = async (args: string[], extra: NodeJS.ProcessEnv = {}) => {
    const r = await execa(rum, args, { cwd: proj, env: { ...env, ...extra }, extendEnv: false, reject: false, timeout: 60_000 });
    return { status: r.exitCode, stderr: String(r.stderr) };
  };
  return { ca, server, run };
}

test('the launcher leaves NODE_EXTRA_CA_CERTS to rum: a bad path costs nothing until an https download', async (t) => {
  const { run } = await setup(t);
  // Node itself warns about an unreadable file at start-up ("Ignoring extra certs"); rum does not start it that way.
  const v = await run(['--version'], { NODE_EXTRA_CA_CERTS: '/nonexistent-rum-test/ca.pem' });
  assert.equal(v.status, 0, v.stderr);
  assert.doesNotMatch(v.stderr, /extra certs/i);
  const b = await run(['build', 'base-image'], { NODE_EXTRA_CA_CERTS: '/nonexistent-rum-test/ca.pem' });
  assert.notEqual(b.status, 0);
  assert.match(b.stderr, /cannot read the CA certificates NODE_EXTRA_CA_CERTS names \(\/nonexistent-rum-test\/ca\.pem\): ENOENT/);
  assert.match(b.stderr, /unset it/);
});

test('an https image from a server whose CA is in NODE_EXTRA_CA_CERTS is trusted; without it, refused at once with a hint', async (t) => {
  const { ca, server, run } = await setup(t);
  const refused = await run(['build', 'base-image']);
  assert.equal(refused.status, 5, refused.stderr);
  assert.match(refused.stderr, /the server's certificate is not trusted/);
  assert.match(refused.stderr, /NODE_EXTRA_CA_CERTS/);
  assert.equal(server.requestsFor('/disk.img').length, 0); // no retries: TLS failed before any request

  const ok = await run(['build', 'base-image'], { NODE_EXTRA_CA_CERTS: ca });
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(server.requestsFor('/disk.img').filter((r) => r.status === 200).length, 1);
});

test('at start-up the name goes back where the user put it, for the processes rum starts', () => {
  const set: NodeJS.ProcessEnv = { RUM_EXTRA_CA_CERTS: '/etc/company-ca.pem', NODE_EXTRA_CA_CERTS: '' };
  takeDeferredCa(set);
  assert.deepEqual(set, { NODE_EXTRA_CA_CERTS: '/etc/company-ca.pem' });
  const unset: NodeJS.ProcessEnv = { RUM_EXTRA_CA_CERTS: '', NODE_EXTRA_CA_CERTS: '' };
  takeDeferredCa(unset);
  assert.deepEqual(unset, {});
  const direct: NodeJS.ProcessEnv = { NODE_EXTRA_CA_CERTS: '/etc/company-ca.pem' }; // node bin/rum.js: Node loaded them
  takeDeferredCa(direct);
  assert.deepEqual(direct, { NODE_EXTRA_CA_CERTS: '/etc/company-ca.pem' });
});
