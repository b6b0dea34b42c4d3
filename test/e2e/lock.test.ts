// rum.lock through the installed rum, against a local mirror in Debian's layout whose `latest`
// moves to a new dated build. Boots no guest: `rum update` and `rum up --dry-run --locked` need
// neither libvirt nor the namespace, so rum and the mirror both run here, on 127.0.0.1.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { execa } from 'execa';
import { TestHttpServer } from '../helpers/http-server.js';
import { rumBin, scratchDir } from './env.js';

const CANONICAL = 'https://cloud.debian.org/images/cloud/bookworm/';
const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex');

/** A small qcow2 image with content of its own, so two builds have different digests. */
async function image(dir: string, name: string): Promise<Buffer> {
  const raw = join(dir, `${name}.raw`);
  await writeFile(raw, randomBytes(256 * 1024));
  execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, join(dir, name)]);
  return readFile(join(dir, name));
}

/** Debian's tree: bookworm/<build>/ for each build, and bookworm/latest/ as a copy of one. */
class Mirror {
  private builds: string[] = [];
  constructor(private readonly srv: TestHttpServer) {}
  get url(): string {
    return this.srv.url('/mirror/');
  }
  publish(build: string, body: Buffer): void {
    const file = `debian-12-genericcloud-amd64-${build}.qcow2`;
    this.srv.file(`/mirror/bookworm/${build}/${file}`, { body });
    this.srv.file(`/mirror/bookworm/${build}/SHA512SUMS`, { body: `${sha512(body)}  ${file}\n` });
    this.builds.push(build);
    this.srv.file('/mirror/bookworm/', { body: ['latest', ...this.builds].map((b) => `<a href="${b}/">${b}/</a>`).join('\n') });
  }
  latest(body: Buffer): void {
    this.srv.file('/mirror/bookworm/latest/debian-12-genericcloud-amd64.qcow2', { body });
    this.srv.file('/mirror/bookworm/latest/SHA512SUMS', { body: `${sha512(body)}  debian-12-genericcloud-amd64.qcow2\n` });
  }
}

test('rum update against a mirror whose latest moved shows the change; --locked fails until the lock matches', async (t) => {
  if (!existsSync(rumBin)) {
    if (process.env.RUM_E2E_REQUIRE === '1') throw new Error(`rum is not installed at ${rumBin}`);
    return t.skip(`rum is not installed at ${rumBin}`);
  }
  const root = await scratchDir(t);
  const srv = await TestHttpServer.start();
  t.after(() => srv.close());
  const mirror = new Mirror(srv);
  const [a, b] = [await image(root, 'a.qcow2'), await image(root, 'b.qcow2')];
  mirror.publish('20250101-1000', a);
  mirror.latest(a);

  const dir = join(root, 'proj');
  execFileSync('mkdir', [dir]);
  await writeFile(join(dir, 'rum.yaml'), 'name: rumtest-lock\nimage:\n  base: debian-12\n');
  const env = { ...process.env, XDG_DATA_HOME: join(root, 'data'), XDG_CACHE_HOME: join(root, 'cache'), RUM_IMAGE_MIRROR: mirror.url, NO_COLOR: '1' };
  const rum = async (...args: string[]) => {
    const r = await execa(rumBin, args, { cwd: dir, env, reject: false, stdin: 'ignore' });
    return { code: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
  const lockFile = join(dir, 'rum.lock');
  const locked = async () => rum('up', '--dry-run', '--locked');

  // No lock: --locked refuses; a dry run writes none.
  let r = await locked();
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--locked: there is no rum\.lock/);
  assert.match(r.stderr, /hint: run `rum update`/);
  r = await rum('up', '--dry-run');
  assert.equal(existsSync(lockFile), false, 'up --dry-run writes no rum.lock');

  // The first resolution: the dated build latest is, by the distribution's URL.
  const urlA = `${CANONICAL}20250101-1000/debian-12-genericcloud-amd64-20250101-1000.qcow2`;
  const urlB = `${CANONICAL}20250201-1100/debian-12-genericcloud-amd64-20250201-1100.qcow2`;
  r = await rum('update', '--json');
  assert.equal(r.code, 0, r.stderr);
  const first = JSON.parse(r.stdout);
  assert.equal(first.written, true);
  assert.deepEqual(first.images.map((i: any) => [i.image, i.change, i.new.url, i.new.digest, i.new.size]), [['debian-12', 'added', urlA, `sha512:${sha512(a)}`, a.length]]);
  const lockA = await readFile(lockFile, 'utf8');
  assert.ok(lockA.includes(`url: ${urlA}`), lockA);
  assert.doesNotMatch(lockA, /127\.0\.0\.1/, 'the lock names no mirror');
  r = await locked();
  assert.notEqual(r.code, 2, `--locked accepts a lock that matches:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /--locked/);

  // latest moves to a new build: update shows old and new; --dry-run leaves the lock alone.
  mirror.publish('20250201-1100', b);
  mirror.latest(b);
  r = await rum('update', '--dry-run');
  assert.equal(r.code, 10, r.stderr);
  assert.match(r.stdout, /debian-12: changed/);
  assert.ok(r.stdout.includes(`- ${urlA}`) && r.stdout.includes(`+ ${urlB}`), r.stdout);
  assert.match(r.stdout, new RegExp(`sha512:${sha512(a).slice(0, 16)}…, ${a.length} bytes, resolved \\d{4}-`));
  assert.match(r.stdout, new RegExp(`sha512:${sha512(b).slice(0, 16)}…`));
  assert.equal(await readFile(lockFile, 'utf8'), lockA, '--dry-run writes nothing');
  r = await locked();
  assert.notEqual(r.code, 2, `a moved latest does not unsettle the lock: it pins the old build\n${r.stderr}`);

  // rum.yaml asks for the new bytes: --locked fails until `rum update` brings the lock in step.
  await writeFile(join(dir, 'rum.yaml'), `name: rumtest-lock\nimage:\n  base: debian-12\n  checksum: sha512:${sha512(b)}\n`);
  r = await locked();
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--locked: rum\.lock does not match rum\.yaml: debian-12's pin does not match image\.checksum/);
  r = await rum('update', '--json');
  assert.equal(r.code, 0, r.stderr);
  const second = JSON.parse(r.stdout);
  assert.deepEqual(second.images.map((i: any) => [i.change, i.old.url, i.new.url, i.new.digest]), [['changed', urlA, urlB, `sha512:${sha512(b)}`]]);
  assert.ok((await readFile(lockFile, 'utf8')).includes(`url: ${urlB}`));
  r = await locked();
  assert.notEqual(r.code, 2, r.stderr);
  r = await rum('update', '--json');
  assert.deepEqual(JSON.parse(r.stdout).images.map((i: any) => i.change), ['same'], 'nothing moved: nothing to write');
});
