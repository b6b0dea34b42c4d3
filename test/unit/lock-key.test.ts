// rum.lock and the build graph, through the real CLI against a local server: a lock written for an
// image built before it costs one verification and changes nothing downstream; a new pin makes
// base-image stale by `rum.lock` and brings the new bytes; a pin the server no longer matches
// stops the build with a hint that names the lock.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { TestHttpServer } from '../helpers/http-server.js';
import { scratchProject } from '../helpers/rig.js';

async function qcow2(dir: string, name: string): Promise<Buffer> {
  const raw = join(dir, `${name}.raw`);
  await writeFile(raw, randomBytes(2 ** 20));
  execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, join(dir, name)]);
  await rm(raw);
  return readFile(join(dir, name));
}

const node = (g: any, id: string) => g.nodes.find((n: any) => n.id === id);

test('a lock for an image built before it: verified once, same output; a new pin rebuilds; a stale pin is named', async (t) => {
  const srv = await TestHttpServer.start();
  t.after(() => srv.close());
  const p = await scratchProject(t, { image: { base: 'debian-12' } });
  const [a, b] = [await qcow2(p.root, 'a.qcow2'), await qcow2(p.root, 'b.qcow2')];
  srv.file('/img.qcow2', { body: a });
  await p.writeConfig({ image: { base: srv.url('/img.qcow2') } });
  const lock = join(p.dir, 'rum.lock');

  // As a VM made before rum.lock: built unpinned; the graph alone writes no lock and keeps the key.
  assert.deepEqual((await p.rumJson('build', 'base-image')).built, ['base-image']);
  assert.equal(node(await p.rumJson('graph'), 'base-image').state, 'fresh');
  assert.equal(existsSync(lock), false);

  // Pinned: the same bytes. base-image is stale by rum.lock alone, and its rebuild is a cutoff
  // served from the cache: not one request.
  assert.equal((await p.rum('update')).code, 0);
  const pinned = await readFile(lock, 'utf8');
  assert.match(pinned, /url: http:\/\/127\.0\.0\.1:\d+\/img\.qcow2/);
  assert.deepEqual(node(await p.rumJson('graph'), 'base-image').reason, { type: 'input-changed', fields: ['rum.lock'] });
  const before = srv.requests.length;
  assert.equal((await p.rumJson('build', 'base-image')).outcomes['base-image'].type, 'cutoff');
  assert.equal(srv.requests.length, before, 'the pinned digest was in the cache');
  assert.equal(node(await p.rumJson('graph'), 'base-image').state, 'fresh');

  // The server's image changes: `rum update` pins the new bytes, and base-image brings them.
  srv.file('/img.qcow2', { body: b });
  const r = await p.rumJson('update');
  assert.deepEqual(r.images.map((i: any) => i.change), ['changed']);
  assert.deepEqual(node(await p.rumJson('graph'), 'base-image').reason, { type: 'input-changed', fields: ['rum.lock'] });
  assert.equal((await p.rumJson('build', 'base-image')).outcomes['base-image'].type, 'built');

  // A teammate's lock pins the old bytes: served from this cache while it has them; once it does
  // not, the server's new bytes do not pass, and the build says the lock is why.
  await writeFile(lock, pinned);
  const cached = srv.requests.length;
  assert.equal((await p.rumJson('build', 'base-image')).outcomes['base-image'].type, 'built');
  assert.equal(srv.requests.length, cached, 'the old bytes came from the cache');
  await rm(join(p.env.XDG_CACHE_HOME!, 'rum', 'images'), { recursive: true, force: true });
  const failed = await p.rum('build', 'base-image');
  assert.equal(failed.code, 5, failed.stderr);
  assert.match(failed.stderr, /checksum mismatch/);
  assert.match(failed.stderr, /\nhint: rum\.lock pins http:\/\/127\.0\.0\.1:\d+\/img\.qcow2 \(resolved [^)]+\): `rum update` pins what the server has now$/);
});

test('a local image replaced behind the lock is named, with both sizes and digests', async (t) => {
  const p = await scratchProject(t, { image: { base: './disk.qcow2' } });
  await qcow2(p.dir, 'disk.qcow2');
  assert.equal((await p.rum('update')).code, 0);
  assert.deepEqual((await p.rumJson('build', 'base-image')).built, ['base-image']);
  await qcow2(p.dir, 'disk.qcow2');
  const r = await p.rum('build', 'base-image');
  assert.equal(r.code, 5, r.stderr);
  assert.match(r.stderr, /\.\/disk\.qcow2 is not the file rum\.lock pinned: it is \d+ bytes with sha256:[0-9a-f]{64}, rum\.lock has \d+ bytes with sha256:[0-9a-f]{64} \(resolved /);
  assert.match(r.stderr, /hint: put the pinned file back, or pin this one: `rum update`/);
  assert.equal((await p.rum('update')).code, 0);
  assert.equal((await p.rum('build', 'base-image')).code, 0, 'pinned again: accepted');
});
