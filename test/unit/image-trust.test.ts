// Nothing trusted unverified, image side (issue 16): a declared checksum is checked whatever the
// source; a base image must be a self-contained qcow2 or raw disk, local or downloaded; a cached
// image changed on disk is noticed and fetched again before anything boots from it. Real small
// images made by qemu-img; downloads from a server on 127.0.0.1 only.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, open, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { RumError } from '../../src/errors.js';
import { ensureImage, urlKey } from '../../src/image/cache.js';
import { inspectBaseImage, MIN_RAW_BYTES } from '../../src/image/inspect.js';
import { checkLocalImage, digestibleOrAbsent } from '../../src/image/local.js';
import { stampChange, stampOf } from '../../src/image/stamp.js';
import { fileChecksum } from '../../src/image/sums.js';
import { TestHttpServer } from '../helpers/http-server.js';
import { scratchProject, type Rig } from '../helpers/rig.js';
import { tally } from '../helpers/tally.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rum-trust-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function server(t: TestContext): Promise<TestHttpServer> {
  const s = await TestHttpServer.start();
  t.after(() => s.close());
  return s;
}

function qemuImg(...args: string[]): void {
  execFileSync('qemu-img', args, { stdio: 'pipe' });
}

/** A 1 MiB qcow2 (its L1 table at 0x30000), with a few random clusters so that each is unique. */
async function qcow2(dir: string, name: string): Promise<string> {
  const p = join(dir, name);
  qemuImg('create', '-q', '-f', 'qcow2', p, '1M');
  const raw = join(dir, `${name}.src`);
  await writeFile(raw, randomBytes(2 ** 20));
  qemuImg('convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, p);
  await rm(raw);
  return p;
}

/** Random bytes that pass for a raw disk: 2 MiB, and the boot signature ending sector 0. */
async function rawDisk(dir: string, name: string): Promise<string> {
  const b = randomBytes(2 * MIN_RAW_BYTES);
  b[510] = 0x55;
  b[511] = 0xaa;
  await writeFile(join(dir, name), b);
  return join(dir, name);
}

/** Overwrite `bytes` at `offset`, keeping the file's size. */
async function poke(path: string, offset: number, bytes: Buffer): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(bytes, 0, bytes.length, offset);
  } finally {
    await fh.close();
  }
}

/** A RumError IMAGE whose message matches every pattern and which carries a hint. */
function imageError(...patterns: (RegExp | string)[]) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof RumError, `a RumError, not ${String(err)}`);
    assert.equal(err.code, 'IMAGE');
    for (const p of patterns) typeof p === 'string' ? assert.ok(err.message.includes(p), `${err.message} names ${p}`) : assert.match(err.message, p);
    assert.ok(err.hint, 'with a hint');
    return true;
  };
}

const cacheImages = async (cacheDir: string) => (await readdir(cacheDir)).filter((f) => f.endsWith('.img'));
const cacheEntries = async (cacheDir: string) => (await readdir(join(cacheDir, 'by-url'))).filter((f) => f.endsWith('.json'));

// --- what may be a base image ------------------------------------------------------------------

test('inspect: a self-contained qcow2 and a partitioned raw disk are accepted', async (t) => {
  const dir = await scratch(t);
  assert.equal((await inspectBaseImage(await qcow2(dir, 'a.qcow2'), 'a', 'local')).format, 'qcow2');
  const raw = await inspectBaseImage(await rawDisk(dir, 'b.raw'), 'b', 'local');
  assert.deepEqual([raw.format, raw.virtualSize], ['raw', 2 * MIN_RAW_BYTES]);
});

test('inspect: whatever is not a self-contained qcow2 or raw disk is refused, named, with a hint', async (t) => {
  const dir = await scratch(t);
  const cases: [string, string, RegExp][] = [];
  const add = (name: string, why: RegExp) => cases.push([name, join(dir, name), why]);

  await writeFile(join(dir, 'notes.txt'), 'not an image\n');
  add('notes.txt', /not a disk image: a 13-byte file/);
  await writeFile(join(dir, 'small.raw'), Buffer.alloc(MIN_RAW_BYTES - 512));
  add('small.raw', /not a disk image/);
  await writeFile(join(dir, 'noise.bin'), randomBytes(2 * MIN_RAW_BYTES));
  add('noise.bin', /no partition table/);

  const base = await qcow2(dir, 'base.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, join(dir, 'overlay.qcow2'));
  add('overlay.qcow2', /is an overlay on .*base\.qcow2, not a self-contained image/);
  qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${join(dir, 'elsewhere.raw')}`, join(dir, 'datafile.qcow2'), '1M');
  add('datafile.qcow2', /keeps its data in another file \(.*elsewhere\.raw\)/);
  await writeFile(
    join(dir, 'descriptor.vmdk'),
    '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "/etc/hostname" 0\n',
  );
  add('descriptor.vmdk', /is a vmdk image; rum uses qcow2 or raw/);

  const broken = await qcow2(dir, 'broken.qcow2');
  await poke(broken, 0x30000, Buffer.alloc(8, 0xff)); // the L1 table: every entry points nowhere
  add('broken.qcow2', /is damaged: \d+ corrupted clusters/);
  const marked = await qcow2(dir, 'marked.qcow2');
  await poke(marked, 72 + 7, Buffer.from([0x02])); // incompatible_features: the corrupt bit
  add('marked.qcow2', /is damaged: its header marks it corrupt/);

  for (const [name, path, why] of cases) {
    await assert.rejects(inspectBaseImage(path, `image.base ${path}`, 'local'), imageError(`image.base ${path}`, why), name);
  }
  tally('input', 'files that are not a self-contained disk image, refused', cases.length, cases.length);
  // the hint fits where the file came from
  await assert.rejects(inspectBaseImage(join(dir, 'notes.txt'), 'http://x/y', 'download'), (err: RumError) => /server sent/.test(err.hint ?? ''));
});

// --- a local image.base ------------------------------------------------------------------------

test('local: a directory, a missing file, a pipe and an unreadable file each get their own message', async (t) => {
  const dir = await scratch(t);
  await mkdir(join(dir, 'images'));
  await assert.rejects(checkLocalImage(join(dir, 'images')), imageError('is a directory, not an image file'));
  await assert.rejects(checkLocalImage(join(dir, 'nope.qcow2')), imageError(`image.base ${join(dir, 'nope.qcow2')} does not exist`));
  execFileSync('mkfifo', [join(dir, 'pipe.img')]);
  await assert.rejects(checkLocalImage(join(dir, 'pipe.img')), imageError('is not a regular file'));

  // The engine digests only what it can read; the rest is left for checkLocalImage to word.
  assert.equal(digestibleOrAbsent(join(dir, 'images')), false);
  assert.equal(digestibleOrAbsent(join(dir, 'pipe.img')), false);
  assert.equal(digestibleOrAbsent(join(dir, 'nope.qcow2')), true);
  const ok = await qcow2(dir, 'ok.qcow2');
  assert.equal(digestibleOrAbsent(ok), true);

  if (process.getuid?.() === 0) return t.diagnostic('unreadable file: skipped as root (root reads every file)');
  await chmod(ok, 0o000);
  assert.equal(digestibleOrAbsent(ok), false);
  await assert.rejects(checkLocalImage(ok), imageError('cannot be read (EACCES)'));
});

test('local: a declared checksum is verified before qemu-img reads the file; expected and actual named', async (t) => {
  const dir = await scratch(t);
  const path = await qcow2(dir, 'disk.qcow2');
  const right = await fileChecksum(path, 'sha256');
  assert.equal(right.hex, sha256(await readFile(path)));
  assert.equal((await checkLocalImage(path, { checksum: right })).format, 'qcow2');

  const wrong = { algo: 'sha256' as const, hex: 'a'.repeat(64) };
  await assert.rejects(
    checkLocalImage(path, { checksum: wrong }),
    imageError(`checksum mismatch for image.base ${path}`, `expected sha256:${wrong.hex}`, `got sha256:${right.hex}`),
  );
  // not an image either: the checksum is what is reported, first
  await writeFile(join(dir, 'notes.txt'), 'text');
  await assert.rejects(checkLocalImage(join(dir, 'notes.txt'), { checksum: wrong }), imageError('checksum mismatch'));
});

// --- downloads and the cache -------------------------------------------------------------------

test('cache: a download that is not an image is refused and never enters the cache', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const cacheDir = join(dir, 'cache');
  const text = Buffer.from('<html>a captive portal</html>\n');
  srv.file('/page', { body: text });
  await assert.rejects(ensureImage(srv.url('/page'), { cacheDir, checksum: { algo: 'sha256', hex: sha256(text) } }), imageError(srv.url('/page'), 'not a disk image'));

  const broken = await qcow2(dir, 'broken.qcow2');
  await poke(broken, 0x30000, Buffer.alloc(8, 0xff));
  const body = await readFile(broken);
  srv.file('/broken.qcow2', { body });
  // its checksum matches: the damage is at the source, and qemu-img check still finds it
  await assert.rejects(ensureImage(srv.url('/broken.qcow2'), { cacheDir, checksum: { algo: 'sha256', hex: sha256(body) } }), imageError('is damaged'));

  assert.deepEqual(await cacheImages(cacheDir), []);
  assert.deepEqual(await readdir(join(cacheDir, 'incoming')), []);
  assert.deepEqual(await cacheEntries(cacheDir), []);
});

test('cache: the stamp it returns is the file as verified; a change is reported by stampChange', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const body = await readFile(await qcow2(dir, 'src.qcow2'));
  srv.file('/img.qcow2', { body });
  const got = await ensureImage(srv.url('/img.qcow2'), { cacheDir: join(dir, 'cache') });
  assert.deepEqual(got.stamp, stampOf(await stat(got.path)));
  assert.equal(await stampChange(got.path, got.stamp), undefined);

  await utimes(got.path, new Date(), new Date(Date.now() + 5000));
  assert.match((await stampChange(got.path, got.stamp)) ?? '', /changed on disk since it was verified/);
  await rm(got.path);
  assert.match((await stampChange(got.path, got.stamp)) ?? '', /is missing/);
});

test('cache: an image damaged in place is not served by its digest to another URL; it is fetched again', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const cacheDir = join(dir, 'cache');
  const body = await readFile(await qcow2(dir, 'src.qcow2'));
  const checksum = { algo: 'sha256' as const, hex: sha256(body) };
  srv.file('/a.qcow2', { body });
  srv.file('/b.qcow2', { body });
  const first = await ensureImage(srv.url('/a.qcow2'), { cacheDir, checksum });

  // same size, new mtime: bit rot, or a stray write
  await poke(first.path, 0x40000, randomBytes(4096));
  const second = await ensureImage(srv.url('/b.qcow2'), { cacheDir, checksum });
  assert.equal(second.downloaded, true, 'fetched, not taken from the damaged file');
  assert.equal(srv.requestsFor('/b.qcow2').length, 1);
  assert.equal(second.path, first.path);
  assert.deepEqual(await readFile(second.path), body);

  // healthy again: a third URL is served from the cache, without a request
  srv.file('/c.qcow2', { body });
  const third = await ensureImage(srv.url('/c.qcow2'), { cacheDir, checksum });
  assert.equal(third.downloaded, false);
  assert.equal(srv.requestsFor('/c.qcow2').length, 0);
});

test('cache: an entry from before images were inspected is inspected once, and a non-image refused', async (t) => {
  const dir = await scratch(t);
  const cacheDir = join(dir, 'cache');
  await mkdir(join(cacheDir, 'by-url'), { recursive: true });
  // as an older rum left it: a tiny raw file, verified by digest only, no `inspected`
  const text = Buffer.from('not an image\n');
  const file = `sha256-${sha256(text)}.img`;
  await writeFile(join(cacheDir, file), text);
  const url = 'http://127.0.0.1:9/old.img'; // never asked: the cache answers, or the test fails
  const entry = { url, digest: `sha256:${sha256(text)}`, file, format: 'raw', virtualSize: 512, verified: true, ...stampOf(await stat(join(cacheDir, file))) };
  await writeFile(join(cacheDir, 'by-url', `${urlKey(url)}.json`), JSON.stringify(entry));
  await assert.rejects(ensureImage(url, { cacheDir, download: { retries: 0 } }), imageError(url, 'not a disk image'));

  // a good old entry gains `inspected` and is served
  const good = await readFile(await qcow2(dir, 'good.qcow2'));
  const goodFile = `sha256-${sha256(good)}.img`;
  await writeFile(join(cacheDir, goodFile), good);
  const url2 = 'http://127.0.0.1:9/good.qcow2';
  const key2 = join(cacheDir, 'by-url', `${urlKey(url2)}.json`);
  await writeFile(key2, JSON.stringify({ ...entry, url: url2, digest: `sha256:${sha256(good)}`, file: goodFile, ...stampOf(await stat(join(cacheDir, goodFile))) }));
  const got = await ensureImage(url2, { cacheDir, download: { retries: 0 } });
  assert.equal(got.format, 'qcow2');
  assert.equal(JSON.parse(await readFile(key2, 'utf8')).inspected, 1);
});

test('cache: an entry whose file is not the one its digest names is not trusted', async (t) => {
  const [dir, srv] = [await scratch(t), await server(t)];
  const cacheDir = join(dir, 'cache');
  const a = await readFile(await qcow2(dir, 'a.qcow2'));
  const b = await readFile(await qcow2(dir, 'b.qcow2'));
  srv.file('/a.qcow2', { body: a });
  srv.file('/b.qcow2', { body: b });
  await ensureImage(srv.url('/a.qcow2'), { cacheDir });
  const other = await ensureImage(srv.url('/b.qcow2'), { cacheDir });
  // an edited entry: a's digest, b's file
  const entryPath = join(cacheDir, 'by-url', `${urlKey(srv.url('/a.qcow2'))}.json`);
  const e = JSON.parse(await readFile(entryPath, 'utf8'));
  await writeFile(entryPath, JSON.stringify({ ...e, file: other.path.split('/').at(-1) }));
  const again = await ensureImage(srv.url('/a.qcow2'), { cacheDir });
  assert.deepEqual(await readFile(again.path), a);
  assert.equal(again.downloaded, true);
});

// --- the base-image rule, through the real CLI -------------------------------------------------

async function rumFails(p: Rig, ...patterns: RegExp[]): Promise<void> {
  const r = await p.rum('build', 'base-image');
  assert.equal(r.code, 5, r.stderr);
  for (const re of patterns) assert.match(r.stderr, re);
  assert.match(r.stderr, /hint: /);
  assert.doesNotMatch(r.stderr, /\n\s+at |rum hit a bug/, 'no stack trace');
}

test('rule: a local image.base that is a directory, missing, not an image or mismatching is refused clearly', async (t) => {
  const p = await scratchProject(t, { image: { base: './images' } });
  await mkdir(join(p.dir, 'images'));
  await rumFails(p, /image\.base .*images is a directory, not an image file/);

  await p.writeConfig({ image: { base: './nope.qcow2' } });
  await rumFails(p, /nope\.qcow2 does not exist/);

  await writeFile(join(p.dir, 'notes.img'), 'hello\n');
  await p.writeConfig({ image: { base: './notes.img' } });
  await rumFails(p, /notes\.img is not a disk image/);

  const disk = await qcow2(p.dir, 'disk.qcow2');
  const right = `sha256:${sha256(await readFile(disk))}`;
  await p.writeConfig({ image: { base: './disk.qcow2', checksum: `sha256:${'0'.repeat(64)}` } });
  await rumFails(p, /checksum mismatch for image\.base .*disk\.qcow2: expected sha256:0{64}, got sha256:[0-9a-f]{64}/);

  await p.writeConfig({ image: { base: './disk.qcow2', checksum: right } });
  assert.deepEqual((await p.rumJson('build', 'base-image')).built, ['base-image']);
  assert.deepEqual((await p.rumJson('build', 'base-image')).built, []);
  // the file replaced by another: the key changes, the checksum is checked again and fails
  await qcow2(p.dir, 'disk.qcow2');
  await rumFails(p, /checksum mismatch/);
});

test('rule: a cached image that changed on disk is not trusted: confirmed by digest, or fetched again', async (t) => {
  const srv = await server(t);
  const p = await scratchProject(t, { image: { base: 'debian-12' } });
  const body = await readFile(await qcow2(p.root, 'src.qcow2'));
  srv.file('/img.qcow2', { body });
  await p.writeConfig({ image: { base: srv.url('/img.qcow2'), checksum: `sha256:${sha256(body)}` } });
  assert.deepEqual((await p.rumJson('build', 'base-image')).built, ['base-image']);
  assert.deepEqual((await p.rumJson('build', 'base-image')).built, [], 'nothing changed: nothing to do');
  const cacheDir = join(p.env.XDG_CACHE_HOME!, 'rum', 'images');
  const [file] = await cacheImages(cacheDir);
  const cached = join(cacheDir, file!);

  // touched only: the digest is confirmed (no request) and nothing downstream would change
  await utimes(cached, new Date(), new Date(Date.now() + 5000));
  const touched = await p.rumJson('build', 'base-image');
  assert.equal(touched.outcomes['base-image'].type, 'cutoff');
  assert.equal(srv.requestsFor('/img.qcow2').length, 1);

  // damaged: fetched again before anything could boot from it
  await poke(cached, 0x30000, Buffer.alloc(8, 0xff));
  const healed = await p.rumJson('build', 'base-image');
  assert.equal(healed.outcomes['base-image'].type, 'cutoff', 'the same image as before, so dependents stay fresh');
  assert.equal(srv.requestsFor('/img.qcow2').length, 2);
  assert.deepEqual(await readFile(cached), body);
  assert.deepEqual((await p.rumJson('build', 'base-image')).built, []);
  tally('fault', 'a cached image damaged on disk (fetched again before use)', 1, 1);
});
