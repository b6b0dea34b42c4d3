// Downloads, resume, verification and the image cache, against a server on 127.0.0.1 only.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { RumError } from '../../src/errors.js';
import { ensureImage, urlKey } from '../../src/image/cache.js';
import { download, type DownloadProgress } from '../../src/image/download.js';
import { check, createOverlay, imageInfo, resize } from '../../src/image/qemu-img.js';
import { resolveShorthand } from '../../src/image/shorthands.js';
import { TestHttpServer } from '../helpers/http-server.js';

const SIZE = 1024 * 1024 + 123; // not a multiple of any buffer size
const fast = { backoffMs: 0 }; // retries without waiting; no test depends on timing

function sha(algo: 'sha256' | 'sha512', data: Buffer): string {
  return createHash(algo).update(data).digest('hex');
}

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rum-image-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function server(t: TestContext): Promise<TestHttpServer> {
  const s = await TestHttpServer.start();
  t.after(() => s.close());
  return s;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

function isImageError(err: unknown): boolean {
  return err instanceof RumError && err.code === 'IMAGE';
}

/** Random bytes that pass for a raw disk: big enough, and the boot signature ending sector 0. */
function rawDisk(size = SIZE): Buffer {
  const b = randomBytes(size);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

/** A small real image made by qemu-img, as bytes to serve. */
function qemuImage(dir: string, name: string, format: 'qcow2' | 'raw', extra: string[] = []): Promise<Buffer> {
  const p = join(dir, name);
  execFileSync('qemu-img', ['create', '-q', '-f', format, ...extra, p, '1M']);
  return readFile(p);
}

test('a download is verified, lands at dest, and leaves no partial behind', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const body = randomBytes(SIZE);
  srv.file('/img', { body });
  const dest = join(dir, 'out.img');
  const r = await download(srv.url('/img'), dest, { expected: { algo: 'sha512', hex: sha('sha512', body) } });
  assert.deepEqual(await readFile(dest), body);
  assert.deepEqual(r.checksum, { algo: 'sha512', hex: sha('sha512', body) });
  assert.equal(r.bytes, SIZE);
  assert.equal(r.verified, true);
  assert.deepEqual(await readdir(dir), ['out.img']);
  assert.equal(srv.requestsFor('/img')[0]?.headers['accept-encoding'], 'identity');
});

test('progress: bytes never go down, total is known, the last event is the whole file', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const body = randomBytes(SIZE);
  srv.file('/img', { body });
  const events: DownloadProgress[] = [];
  await download(srv.url('/img'), join(dir, 'out.img'), { onProgress: (p) => events.push(p) });
  assert.ok(events.length >= 2);
  for (let i = 1; i < events.length; i++) assert.ok(events[i]!.received >= events[i - 1]!.received);
  for (const e of events) {
    assert.equal(e.total, SIZE);
    assert.ok(e.rate >= 0 && Number.isFinite(e.rate));
  }
  assert.equal(events.at(-1)!.received, SIZE);
});

test('a cut connection is resumed with Range, and the bytes already here are not sent again', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const body = randomBytes(SIZE);
  srv.file('/img', { body, cut: { afterBytes: 300_000, times: 1 } });
  const dest = join(dir, 'out.img');
  const r = await download(srv.url('/img'), dest, { ...fast, expected: { algo: 'sha256', hex: sha('sha256', body) } });
  assert.deepEqual(await readFile(dest), body);
  assert.equal(r.verified, true);
  const [first, second, ...more] = srv.requestsFor('/img');
  assert.equal(more.length, 0);
  assert.equal(first!.headers.range, undefined);
  const m = /^bytes=(\d+)-$/.exec(String(second!.headers.range));
  assert.ok(m, `second request asked for a range: ${second!.headers.range}`);
  const from = Number(m[1]);
  assert.ok(from > 0 && from <= 300_000, `resumed from ${from}`);
  assert.equal(second!.status, 206);
  assert.equal(second!.bytesSent, SIZE - from);
});

test('a partial left by an earlier run is re-hashed and resumed (If-Range names its version)', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const body = randomBytes(SIZE);
  srv.file('/img', { body, etag: '"v1"', cut: { afterBytes: 400_000, times: 1 } });
  const dest = join(dir, 'out.img');
  const expected = { algo: 'sha512' as const, hex: sha('sha512', body) };
  await assert.rejects(download(srv.url('/img'), dest, { ...fast, retries: 0, expected }), isImageError);
  assert.equal(await exists(dest), false);
  const kept = (await stat(`${dest}.partial`)).size;
  assert.ok(kept > 0 && kept <= 400_000);

  await download(srv.url('/img'), dest, { ...fast, expected });
  assert.deepEqual(await readFile(dest), body);
  const [, second, ...more] = srv.requestsFor('/img');
  assert.equal(more.length, 0); // the kept prefix hashed right: no start-over after a mismatch
  assert.equal(second!.headers.range, `bytes=${kept}-`);
  assert.equal(second!.headers['if-range'], '"v1"');
  assert.equal(second!.bytesSent, SIZE - kept);
});

test('a file that changed since the partial was fetched comes back whole (If-Range)', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const v1 = randomBytes(SIZE);
  const v2 = randomBytes(SIZE);
  srv.file('/img', { body: v1, etag: '"v1"', cut: { afterBytes: 200_000, times: 1 } });
  const dest = join(dir, 'out.img');
  await assert.rejects(download(srv.url('/img'), dest, { ...fast, retries: 0 }), isImageError);
  srv.file('/img', { body: v2, etag: '"v2"' });
  await download(srv.url('/img'), dest, { ...fast, expected: { algo: 'sha256', hex: sha('sha256', v2) } });
  assert.deepEqual(await readFile(dest), v2);
  assert.equal(srv.requestsFor('/img')[1]!.status, 200);
});

test('a server that ignores Range answers 200: the download restarts from zero, cleanly', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const body = randomBytes(SIZE);
  srv.file('/img', { body, ignoreRange: true, cut: { afterBytes: 500_000, times: 1 } });
  const dest = join(dir, 'out.img');
  const events: DownloadProgress[] = [];
  await download(srv.url('/img'), dest, {
    ...fast,
    expected: { algo: 'sha256', hex: sha('sha256', body) },
    onProgress: (p) => events.push(p),
  });
  assert.deepEqual(await readFile(dest), body);
  const [, second] = srv.requestsFor('/img');
  assert.ok(second!.headers.range, 'it did ask for a range');
  assert.equal(second!.status, 200);
  assert.equal(events.at(-1)!.received, SIZE);
});

test('an aborted download keeps its partial for the next run', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const body = randomBytes(SIZE);
  srv.file('/img', { body });
  const dest = join(dir, 'out.img');
  const stop = new AbortController();
  await assert.rejects(
    download(srv.url('/img'), dest, { signal: stop.signal, onProgress: () => stop.abort() }),
    (err) => (err as Error).name === 'AbortError',
  );
  assert.equal(await exists(dest), false);
  assert.equal(await exists(`${dest}.partial`), true);
  await download(srv.url('/img'), dest, { expected: { algo: 'sha256', hex: sha('sha256', body) } });
  assert.deepEqual(await readFile(dest), body);
  assert.deepEqual(await readdir(dir), ['out.img']);
});

test('a partial that is already the whole file is finished by a 416, without the body again', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const body = randomBytes(SIZE);
  srv.file('/img', { body });
  const dest = join(dir, 'out.img');
  // as a crash between the last write and the rename leaves it
  await writeFile(`${dest}.partial`, body);
  await writeFile(`${dest}.partial.json`, JSON.stringify({ url: srv.url('/img') }));
  await download(srv.url('/img'), dest, { expected: { algo: 'sha256', hex: sha('sha256', body) } });
  assert.deepEqual(await readFile(dest), body);
  assert.deepEqual(
    srv.requestsFor('/img').map((r) => [r.status, r.bytesSent]),
    [[416, 0]],
  );
});

test('a checksum mismatch is rejected: expected and actual named, nothing promoted, no partial kept', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const body = randomBytes(SIZE);
  srv.file('/img', { body });
  const dest = join(dir, 'out.img');
  const wrong = '0'.repeat(64);
  await assert.rejects(download(srv.url('/img'), dest, { expected: { algo: 'sha256', hex: wrong } }), (err) => {
    assert.ok(isImageError(err));
    const e = err as RumError;
    assert.match(e.message, new RegExp(`expected sha256:${wrong}`));
    assert.match(e.message, new RegExp(`got sha256:${sha('sha256', body)}`));
    assert.ok(e.hint);
    return true;
  });
  assert.deepEqual(await readdir(dir), []);
});

test('a mismatch after a resume starts over once before giving up', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const body = randomBytes(SIZE);
  srv.file('/img', { body }); // no validator: the server cannot tell versions apart
  const dest = join(dir, 'out.img');
  await writeFile(`${dest}.partial`, randomBytes(1000)); // stale bytes of an older file
  await writeFile(`${dest}.partial.json`, JSON.stringify({ url: srv.url('/img') }));
  await download(srv.url('/img'), dest, { expected: { algo: 'sha256', hex: sha('sha256', body) } });
  assert.deepEqual(await readFile(dest), body);
  assert.deepEqual(
    srv.requestsFor('/img').map((r) => r.headers.range),
    ['bytes=1000-', undefined],
  );
});

test('redirects are followed (relative too), and a loop ends with an error', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const body = randomBytes(1000);
  srv.file('/real/img', { body });
  srv.redirect('/a', srv.url('/b'), 301);
  srv.redirect('/b', '/real/img', 307);
  await download(srv.url('/a'), join(dir, 'a.img'), { expected: { algo: 'sha256', hex: sha('sha256', body) } });
  assert.deepEqual(await readFile(join(dir, 'a.img')), body);

  srv.redirect('/loop', '/loop');
  await assert.rejects(download(srv.url('/loop'), join(dir, 'loop.img'), { maxRedirects: 3 }), /redirected more than 3 times/);
  assert.equal(srv.requestsFor('/loop').length, 4);
});

test('5xx is retried; 404 is not; retries without progress are bounded', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const body = randomBytes(1000);
  srv.file('/flaky', { body, fail: { status: 503, times: 2 } });
  await download(srv.url('/flaky'), join(dir, 'f.img'), fast);
  assert.deepEqual(await readFile(join(dir, 'f.img')), body);
  assert.equal(srv.requestsFor('/flaky').length, 3);

  await assert.rejects(download(srv.url('/missing'), join(dir, 'm.img'), fast), (err) => {
    assert.ok(isImageError(err));
    assert.match((err as Error).message, /HTTP 404/);
    return true;
  });
  assert.equal(srv.requestsFor('/missing').length, 1);

  srv.file('/dead', { body, cut: { afterBytes: 0, times: 1000 } });
  await assert.rejects(download(srv.url('/dead'), join(dir, 'd.img'), { ...fast, retries: 2 }), /after 3 attempts/);
  assert.equal(srv.requestsFor('/dead').length, 3);
});

test('SUMS: a shorthand pointed at the local server through the mirror is looked up and verified', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const qcow = await qemuImage(dir, 'src.qcow2', 'qcow2');
  const img = resolveShorthand('debian-12', srv.url('/mirror/debian'));
  assert.equal(img.url, srv.url('/mirror/debian/bookworm/latest/debian-12-genericcloud-amd64.qcow2'));
  srv.file(new URL(img.url).pathname, { body: qcow });
  srv.file(new URL(img.sumsUrl).pathname, {
    body: [
      `${'a'.repeat(128)}  debian-12-genericcloud-amd64.raw`,
      `${sha('sha512', qcow)}  ${img.fileName}`,
      `${'b'.repeat(128)}  debian-12-genericcloud-amd64.tar.xz`,
      '',
    ].join('\n'),
  });
  const cacheDir = join(dir, 'cache');
  const got = await ensureImage(img.url, { cacheDir, sums: { url: img.sumsUrl, algo: img.algo, fileName: img.fileName } });
  assert.equal(got.digest, `sha512:${sha('sha512', qcow)}`);
  assert.equal(got.path, join(cacheDir, `sha512-${sha('sha512', qcow)}.img`));
  assert.equal(got.format, 'qcow2');
  assert.equal(got.virtualSize, 1024 * 1024);
  assert.equal(got.verified, true);
  assert.equal(got.downloaded, true);
  assert.deepEqual(await readFile(got.path), qcow);

  // download() reads the same list by itself too
  const r = await download(img.url, join(dir, 'direct.qcow2'), { sums: { url: img.sumsUrl, algo: 'sha512' } });
  assert.equal(r.verified, true);

  // a list without the file is an error, not an unverified download
  srv.file(new URL(img.sumsUrl).pathname, { body: `${'c'.repeat(128)}  other.qcow2\n` });
  await assert.rejects(
    download(img.url, join(dir, 'x.qcow2'), { sums: { url: img.sumsUrl, algo: 'sha512' } }),
    /lists no sha512 digest for debian-12-genericcloud-amd64.qcow2/,
  );
});

test('the cache: a second ensureImage of a URL makes no request; a pinned digest is found by content', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const raw = rawDisk();
  srv.file('/one.img', { body: raw });
  const cacheDir = join(dir, 'cache');
  const checksum = { algo: 'sha256' as const, hex: sha('sha256', raw) };
  const first = await ensureImage(srv.url('/one.img'), { cacheDir, checksum });
  assert.equal(first.downloaded, true);
  assert.equal(first.format, 'raw');
  const before = srv.requests.length;

  const again = await ensureImage(srv.url('/one.img'), { cacheDir, checksum });
  assert.equal(again.downloaded, false);
  assert.equal(again.path, first.path);
  // same bytes under another URL, pinned: no request either
  const other = await ensureImage(srv.url('/copy.img'), { cacheDir, checksum });
  assert.equal(other.path, first.path);
  // and the URL alone (as after a SUMS lookup) is remembered
  const unpinned = await ensureImage(srv.url('/one.img'), { cacheDir });
  assert.equal(unpinned.digest, `sha256:${checksum.hex}`);
  assert.equal(srv.requests.length, before);

  // a cached file that was altered is noticed and fetched again
  await writeFile(first.path, randomBytes(10));
  const healed = await ensureImage(srv.url('/one.img'), { cacheDir, checksum });
  assert.equal(healed.downloaded, true);
  assert.deepEqual(await readFile(healed.path), raw);
});

test('the cache: a mismatch leaves the cache without an image or an entry', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  srv.file('/bad.img', { body: randomBytes(5000) });
  const cacheDir = join(dir, 'cache');
  await assert.rejects(
    ensureImage(srv.url('/bad.img'), { cacheDir, checksum: { algo: 'sha256', hex: 'f'.repeat(64) } }),
    isImageError,
  );
  assert.deepEqual((await readdir(cacheDir)).filter((f) => f.endsWith('.img')), []);
  assert.deepEqual(await readdir(join(cacheDir, 'incoming')), []);
  assert.deepEqual((await readdir(join(cacheDir, 'by-url'))).filter((f) => f.endsWith('.json')), []);
});

test('the cache: two concurrent ensureImage calls download once', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const body = rawDisk();
  srv.file('/img', { body });
  const cacheDir = join(dir, 'cache');
  const checksum = { algo: 'sha256' as const, hex: sha('sha256', body) };
  const [a, b] = await Promise.all([
    ensureImage(srv.url('/img'), { cacheDir, checksum }),
    ensureImage(srv.url('/img'), { cacheDir, checksum }),
  ]);
  assert.equal(a.path, b.path);
  assert.equal(srv.requestsFor('/img').length, 1);
  assert.deepEqual([a.downloaded, b.downloaded].sort(), [false, true]);
});

test('the cache: a lock left by a dead process is taken over', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const body = rawDisk();
  srv.file('/img', { body });
  const cacheDir = join(dir, 'cache');
  const dead = spawnSync('true').pid; // exited: its PID names no process (barring reuse)
  await mkdir(join(cacheDir, 'by-url'), { recursive: true });
  const lock = join(cacheDir, 'by-url', `${urlKey(srv.url('/img'))}.lock`);
  await writeFile(lock, JSON.stringify({ pid: dead, host: hostname(), token: 'x' }));
  const got = await ensureImage(srv.url('/img'), { cacheDir, lockTimeoutMs: 5000 });
  assert.deepEqual(await readFile(got.path), body);
  assert.equal(await exists(lock), false);
});

test('the cache: an image with a backing file is refused', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  await qemuImage(dir, 'base.raw', 'raw');
  const overlay = await qemuImage(dir, 'evil.qcow2', 'qcow2', ['-F', 'raw', '-b', join(dir, 'base.raw')]);
  srv.file('/evil.qcow2', { body: overlay });
  const cacheDir = join(dir, 'cache');
  await assert.rejects(ensureImage(srv.url('/evil.qcow2'), { cacheDir }), /not a self-contained image/);
  assert.deepEqual((await readdir(cacheDir)).filter((f) => f.endsWith('.img')), []);
  assert.deepEqual(await readdir(join(cacheDir, 'incoming')), [], 'refused before it was renamed into the cache');
  assert.deepEqual((await readdir(join(cacheDir, 'by-url'))).filter((f) => f.endsWith('.json')), []);
});

test('qemu-img: info on qcow2 and raw, overlay, resize, check', async (t) => {
  const dir = await scratch(t);
  await qemuImage(dir, 'a.qcow2', 'qcow2');
  await qemuImage(dir, 'b.raw', 'raw');
  assert.deepEqual(
    { ...(await imageInfo(join(dir, 'a.qcow2'))), actualSize: undefined },
    { format: 'qcow2', virtualSize: 1024 * 1024, actualSize: undefined },
  );
  const raw = await imageInfo(join(dir, 'b.raw'));
  assert.equal(raw.format, 'raw');
  assert.equal(raw.virtualSize, 1024 * 1024);
  assert.equal(raw.backingFile, undefined);

  const ov = join(dir, 'disk.qcow2');
  await createOverlay(ov, { backing: join(dir, 'a.qcow2'), backingFormat: 'qcow2', sizeBytes: 4 * 1024 * 1024 });
  const info = await imageInfo(ov);
  assert.equal(info.format, 'qcow2');
  assert.equal(info.virtualSize, 4 * 1024 * 1024);
  assert.equal(info.backingFile, join(dir, 'a.qcow2'));
  assert.equal(info.backingFormat, 'qcow2');

  await resize(ov, 8 * 1024 * 1024);
  assert.equal((await imageInfo(ov)).virtualSize, 8 * 1024 * 1024);
  await assert.rejects(resize(ov, 1024 * 1024), /does not shrink/);

  assert.deepEqual(await check(ov), { ok: true, message: 'no errors' });
  assert.equal((await check(join(dir, 'b.raw'))).ok, true);
  await writeFile(join(dir, 'junk.qcow2'), 'not an image');
  await assert.rejects(check(join(dir, 'junk.qcow2'), 'qcow2'), isImageError);
  await assert.rejects(imageInfo(join(dir, 'missing.img')), (err) => {
    assert.ok(isImageError(err));
    assert.match((err as RumError).message, /No such file/);
    return true;
  });
});

test('a password in an image URL is never shown in a message', async () => {
  const { shown } = await import('../../src/image/download.js');
  assert.equal(shown('https://me:s3cret@example.test/x.qcow2'), 'https://me:***@example.test/x.qcow2');
  assert.equal(shown('https://example.test/x.qcow2'), 'https://example.test/x.qcow2');
  await assert.rejects(download('http://me:s3cret@127.0.0.1:1/x.qcow2', '/nonexistent/dir/x'), (err: Error) => !err.message.includes('s3cret'));
});
