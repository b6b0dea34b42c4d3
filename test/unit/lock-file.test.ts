// rum.lock: written in one stable order and read back exactly; every damaged or hostile file is
// refused at its line, with the line, a hint and the whole list of problems at once. Also the
// pieces around it: whether a pin answers rum.yaml, finding the dated build behind `latest` on a
// local server, and pinning before a run (written once, then left alone).
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { formatLock, lockPathFor, parseLock, readLock, type Pins } from '../../src/config/lock-file.js';
import { ConfigError, type Diagnostic } from '../../src/errors.js';
import { findDatedBuild, listedDirectories } from '../../src/image/dated.js';
import { ensureImage } from '../../src/image/cache.js';
import { pinAnswers, resolvePin } from '../../src/image/pin.js';
import { resolveShorthand } from '../../src/image/shorthands.js';
import { diffPins, pinMissing } from '../../src/machine/pinning.js';
import type { OpenProject } from '../../src/machine/project.js';
import { TestHttpServer } from '../helpers/http-server.js';

const D512 = `sha512:${'ab'.repeat(64)}`;
const D256 = `sha256:${'cd'.repeat(32)}`;
const DEBIAN = 'https://cloud.debian.org/images/cloud/bookworm/20250115-1993/debian-12-genericcloud-amd64-20250115-1993.qcow2';

const PINS: Pins = {
  'debian-12': { url: DEBIAN, digest: D512, size: 350_000_000, resolved: '2026-01-15T09:30:00Z' },
  './images/base.qcow2': { digest: D256, size: 1_048_576, resolved: '2026-01-16T10:00:00Z' },
  'https://example.org/img.qcow2?v=2#x': { url: 'https://example.org/img.qcow2?v=2#x', digest: D256, size: 5, resolved: '2026-01-17T11:00:00Z' },
  'ubuntu-24.04': { url: 'https://cloud-images.ubuntu.com/releases/24.04/release-20240423/ubuntu-24.04-server-cloudimg-amd64.img', digest: D256, size: 7, resolved: '2026-01-18T12:00:00Z' },
};

test('round trip: the pins read back exactly, in one order whatever order they were made in', () => {
  const text = formatLock(PINS);
  assert.deepEqual(parseLock(text, '/p/rum.lock'), PINS);
  const reversed = Object.fromEntries(Object.entries(PINS).reverse());
  assert.equal(formatLock(reversed), text, 'same pins, same bytes');
  assert.equal(formatLock(parseLock(text, '/p/rum.lock')), text);
  // Readable: one field a line, the URL as it is, the distribution's (no mirror in it).
  assert.match(text, /^lock: 1$/m);
  assert.match(text, new RegExp(`^    url: ${DEBIAN.replace(/[.?]/g, '\\$&')}$`, 'm'));
  assert.match(text, /^  "\.\/images\/base\.qcow2":\n    digest: sha256:/m, 'a local path has no url');
  assert.deepEqual(parseLock(formatLock({}), 'rum.lock'), {});
});

test('lockPathFor: beside the config file, named after it', () => {
  assert.equal(lockPathFor('/p/rum.yaml'), '/p/rum.lock');
  assert.equal(lockPathFor('/p/ci.rum.yml'), '/p/ci.rum.lock');
});

function problems(text: string | Buffer): Diagnostic[] {
  try {
    parseLock(text, '/p/rum.lock');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `a ConfigError, not ${String(err)}`);
    assert.equal(err.code, 'CONFIG_INVALID');
    assert.match(err.message, /^rum\.lock has (a problem|\d+ problems)$/);
    for (const d of err.diagnostics) {
      assert.equal(d.file, '/p/rum.lock');
      assert.ok(d.line >= 1 && d.col >= 1);
      assert.ok(d.hint, `a hint for: ${d.message}`);
    }
    return err.diagnostics;
  }
  assert.fail(`accepted:\n${String(text)}`);
}

const good = formatLock({ 'debian-12': PINS['debian-12']! });
const edit = (from: string | RegExp, to: string) => good.replace(from, to);

test('damaged: each problem at its line, with the line, all at once', () => {
  const cases: [string, string, RegExp, number][] = [
    ['a digest cut short', edit(/digest: .*/, 'digest: sha512:abab'), /digest must be sha256:<64 hex digits> or sha512/, 7],
    ['a negative size', edit(/size: .*/, 'size: -1'), /size must be a whole number of bytes/, 8],
    ['a size as text', edit(/size: .*/, 'size: "12"'), /size must be a whole number/, 8],
    ['a date that is no time', edit(/resolved: .*/, 'resolved: yesterday'), /resolved must be a UTC time/, 9],
    ['an unknown field', edit(/resolved: .*/, '$&\n    sha: x'), /unknown key "sha" in debian-12/, 10],
    ['a newer format', edit('lock: 1', 'lock: 2'), /format 2 is from a newer rum/, 3],
    ['a mirror in place of the distribution', edit('https://cloud.debian.org/images/cloud/', 'http://10.0.0.5/'), /url must be on the distribution's server/, 6],
    ['a file: URL', edit(/url: .*/, 'url: file:///etc/shadow'), /url must be an http\(s\) URL/, 6],
    ['a URL that is not its key', `lock: 1\nimages:\n  https://a.example/x.img:\n    url: https://b.example/x.img\n    digest: ${D256}\n    size: 1\n    resolved: "2026-01-01T00:00:00Z"\n`, /url must be the image's own URL/, 4],
    ['a local path with a url', `lock: 1\nimages:\n  ./x.qcow2:\n    url: ${DEBIAN}\n    digest: ${D256}\n    size: 1\n    resolved: "2026-01-01T00:00:00Z"\n`, /is a local path: it is pinned by digest and size, with no url/, 4],
    ['an unknown shorthand', edit('  debian-12:', '  debian-99:'), /unknown image shorthand "debian-99"/, 5],
    ['a missing digest', edit(/ {4}digest: .*\n/, ''), /debian-12: missing key "digest"/, 5],
    ['a duplicate key', edit(/size: .*/, '$&\n    size: 2'), /duplicate key "size"/, 9],
    ['broken YAML', edit(/resolved: .*/, 'resolved: "2026-01-15'), /invalid YAML/, 9],
    ['a tab for indentation', edit('    size:', '\tsize:'), /tab character used for indentation/, 8],
    ['no images', 'lock: 1\n', /missing key "images"/, 1],
    ['not a mapping', '- a\n- b\n', /must be a mapping with lock: and images:/, 1],
    ['empty', '', /must be a mapping with lock: and images:/, 1],
    ['a second document', `${good}---\nlock: 1\n`, /one YAML document/, 10],
  ];
  for (const [what, text, message, line] of cases) {
    const found = problems(text);
    const hit = found.find((d) => message.test(d.message));
    assert.ok(hit, `${what}: ${found.map((d) => d.message).join(' | ')}`);
    assert.equal(hit.line, line, `${what}: at line ${line}`);
    assert.equal(hit.source, text.split('\n')[line - 1], `${what}: the line itself`);
  }
  // Several at once, in the order of the file.
  const many = problems(edit(/size: .*/, 'size: x').replace(/digest: .*/, 'digest: md5:1').replace('lock: 1', 'lock: 0'));
  assert.deepEqual(many.map((d) => d.line), [3, 7, 8]);
});

test('hostile: aliases, anchors, tags, a billion laughs, binary and huge files are refused', () => {
  const laughs = `a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nlock: 1\nimages: {}\n`;
  assert.ok(problems(laughs).some((d) => /no aliases/.test(d.message) && d.line === 2));
  assert.ok(problems(edit(/size: .*/, 'size: &s 5')).some((d) => /no anchors or tags/.test(d.message) && d.line === 8));
  assert.ok(problems(edit(/size: .*/, 'size: !!str 5')).some((d) => /no anchors or tags/.test(d.message)));
  assert.ok(problems(edit(/digest: .*/, 'digest: !<tag:yaml.org,2002:js/function> "x"')).length > 0);
  assert.ok(problems(Buffer.from([0x6c, 0x6f, 0xff, 0xfe, 0x0a])).some((d) => /not UTF-8/.test(d.message)));
  assert.ok(problems(`# ${'x'.repeat(1024 * 1024)}\n${good}`).some((d) => /larger than a lock file/.test(d.message)));
  assert.ok(problems(edit('debian-12:', '? [a, b]\n  :')).length > 0, 'a key that is a list');
});

test('readLock: no file is no lock; a damaged one throws at its line', async (t) => {
  const dir = await scratch(t);
  assert.equal(await readLock(join(dir, 'rum.lock')), undefined);
  await writeFile(join(dir, 'rum.lock'), edit(/size: .*/, 'size: -1'));
  await assert.rejects(readLock(join(dir, 'rum.lock')), (err: unknown) => err instanceof ConfigError && err.diagnostics[0]!.line === 8);
});

test('pinAnswers: the kind must agree, and the digest image.checksum names', () => {
  const pin = PINS['debian-12']!;
  assert.equal(pinAnswers(pin, { base: 'debian-12', dir: '/p' }), true);
  assert.equal(pinAnswers(pin, { base: 'debian-12', dir: '/p', checksum: D512 }), true);
  assert.equal(pinAnswers(pin, { base: 'debian-12', dir: '/p', checksum: D512.toUpperCase().replace('SHA512', 'sha512') }), true);
  assert.equal(pinAnswers(pin, { base: 'debian-12', dir: '/p', checksum: D256 }), false);
  assert.equal(pinAnswers(PINS['./images/base.qcow2']!, { base: './images/base.qcow2', dir: '/p' }), true);
  assert.equal(pinAnswers(pin, { base: './images/base.qcow2', dir: '/p' }), false, 'a path is not pinned by URL');
});

test('listedDirectories: the links of Apache, nginx and python indexes', () => {
  const apache = '<tr><td><a href="20250101-1000/">20250101-1000/</a></td></tr><a href="/images/cloud/bookworm/20250201-1100/">x</a><a href="../">Parent</a><a href="?C=M;O=A">Last</a><a href="SHA512SUMS">f</a>';
  assert.deepEqual(listedDirectories(apache).sort(), ['20250101-1000', '20250201-1100']);
  assert.deepEqual(listedDirectories('<li><a href="release-20240423/">release-20240423/</a></li><li><a href="release%2D20240501.1/">'), ['release-20240423', 'release-20240501.1']);
});

test('findDatedBuild: the newest dated build with the same digest, by its distribution URL; else why', async (t) => {
  const srv = await TestHttpServer.start();
  t.after(() => srv.close());
  const sums = (build: string, hex: string) => `${hex}  debian-12-genericcloud-amd64-${build}.qcow2\n`;
  const [a, b] = ['1'.repeat(128), '2'.repeat(128)];
  srv.file('/m/bookworm/', { body: '<a href="latest/">latest/</a><a href="20250101-1000/">x</a><a href="20250201-1100/">x</a><a href="daily/">d</a>' });
  srv.file('/m/bookworm/20250101-1000/SHA512SUMS', { body: sums('20250101-1000', a) });
  srv.file('/m/bookworm/20250201-1100/SHA512SUMS', { body: sums('20250201-1100', b) });
  const mirror = srv.url('/m/');
  const found = await findDatedBuild('debian-12', { algo: 'sha512', hex: a }, mirror, { retries: 0 });
  assert.deepEqual(found, { url: 'https://cloud.debian.org/images/cloud/bookworm/20250101-1000/debian-12-genericcloud-amd64-20250101-1000.qcow2', build: '20250101-1000' });
  assert.deepEqual(srv.requests.map((r) => r.path), ['/m/bookworm/', '/m/bookworm/20250201-1100/SHA512SUMS', '/m/bookworm/20250101-1000/SHA512SUMS'], 'newest first; nothing else');
  const none = await findDatedBuild('debian-12', { algo: 'sha512', hex: '3'.repeat(128) }, mirror, { retries: 0 });
  assert.match(String(none.why), /none of the 2 newest dated builds has this digest/);
  const noListing = await findDatedBuild('debian-13', { algo: 'sha512', hex: a }, mirror, { retries: 0 });
  assert.match(String(noListing.why), /no listing of the dated builds/);
});

test('resolvePin: without refresh, the image this cache holds (a VM made before the lock); with it, the moved latest', async (t) => {
  const dir = await scratch(t);
  const srv = await TestHttpServer.start();
  t.after(() => srv.close());
  const image = async (name: string) => {
    await writeFile(join(dir, `${name}.raw`), randomBytes(256 * 1024));
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', join(dir, `${name}.raw`), join(dir, name)]);
    return readFile(join(dir, name));
  };
  const hex = (b: Buffer) => createHash('sha512').update(b).digest('hex');
  const builds: string[] = [];
  const publish = (build: string, body: Buffer) => {
    const file = `debian-12-genericcloud-amd64-${build}.qcow2`;
    srv.file(`/m/bookworm/${build}/SHA512SUMS`, { body: `${hex(body)}  ${file}\n` });
    builds.push(build);
    srv.file('/m/bookworm/', { body: builds.map((b) => `<a href="${b}/">`).join('') });
    srv.file('/m/bookworm/latest/debian-12-genericcloud-amd64.qcow2', { body });
    srv.file('/m/bookworm/latest/SHA512SUMS', { body: `${hex(body)}  debian-12-genericcloud-amd64.qcow2\n` });
  };
  const [a, b] = [await image('a.qcow2'), await image('b.qcow2')];
  const opts = { mirror: srv.url('/m/'), cacheDir: join(dir, 'cache'), now: new Date('2026-02-03T04:05:06.789Z') };
  const ask = { base: 'debian-12', dir };
  publish('20250101-1000', a);
  const first = await resolvePin(ask, opts);
  assert.deepEqual(first, { pin: { url: `${CANONICAL}20250101-1000/debian-12-genericcloud-amd64-20250101-1000.qcow2`, digest: `sha512:${hex(a)}`, size: a.length, resolved: '2026-02-03T04:05:06Z' } });
  const images = () => srv.requests.filter((r) => r.path.endsWith('.qcow2'));
  assert.ok(images().every((r) => r.bytesSent <= 1), 'resolving downloads no image: its size comes from one byte\'s Content-Range');
  // A VM made before rum.lock: its build cached `latest` as it was then.
  const s = resolveShorthand('debian-12', opts.mirror);
  await ensureImage(s.url, { cacheDir: opts.cacheDir, sums: { url: s.sumsUrl, algo: s.algo, fileName: s.fileName } });
  publish('20250201-1100', b);
  assert.equal((await resolvePin(ask, opts))!.pin.digest, `sha512:${hex(a)}`, 'the cached image, not the moved latest');
  const moved = await resolvePin(ask, { ...opts, refresh: true });
  assert.equal(moved!.pin.url, `${CANONICAL}20250201-1100/debian-12-genericcloud-amd64-20250201-1100.qcow2`);
  assert.equal(moved!.pin.digest, `sha512:${hex(b)}`);
  // A mirror without a listing: `latest` by the distribution's URL, still pinned by digest, and said.
  srv.file('/m/bookworm/', { body: 'nothing here', fail: { status: 404, times: 99 } });
  const unlisted = await resolvePin(ask, opts);
  assert.equal(unlisted!.pin.url, `${CANONICAL}latest/debian-12-genericcloud-amd64.qcow2`);
  assert.equal(unlisted!.pin.digest, `sha512:${hex(a)}`, 'update pinned b but fetched nothing: the cache still holds a');
  assert.match(String(unlisted!.note), /names the moving .*latest.* \(no listing of the dated builds/);
  assert.ok(srv.requests.every((r) => r.path.startsWith('/m/')), 'only the mirror was asked');
});

const CANONICAL = 'https://cloud.debian.org/images/cloud/bookworm/';

test('pinMissing: a first run pins and writes; the next leaves the file alone; unused pins go', async (t) => {
  const dir = await scratch(t);
  const image = join(dir, 'base.qcow2');
  await writeFile(image, 'not really an image, but pinned by its bytes\n');
  const config = { image: { base: './base.qcow2' }, dir } as unknown as OpenProject['project']['machines'][number];
  const o = { project: { file: join(dir, 'rum.yaml'), machines: [config] }, env: {} } as unknown as OpenProject;
  const first = await pinMissing(o, [config]);
  assert.deepEqual(first.map((c) => [c.image, c.change]), [['./base.qcow2', 'added']]);
  const pins = (await readLock(join(dir, 'rum.lock')))!;
  assert.equal(pins['./base.qcow2']!.digest, `sha256:${createHash('sha256').update(await readFile(image)).digest('hex')}`);
  assert.equal(pins['./base.qcow2']!.size, (await stat(image)).size);
  const written = await stat(join(dir, 'rum.lock'));

  const again = await pinMissing(o, [config]);
  assert.deepEqual(again.map((c) => c.change), ['same']);
  assert.equal((await stat(join(dir, 'rum.lock'))).mtimeMs, written.mtimeMs, 'not rewritten');

  await writeFile(join(dir, 'rum.lock'), formatLock({ ...pins, 'debian-12': PINS['debian-12']! }));
  assert.deepEqual((await pinMissing(o, [config])).map((c) => [c.image, c.change]), [['./base.qcow2', 'same'], ['debian-12', 'removed']]);
  assert.deepEqual(Object.keys((await readLock(join(dir, 'rum.lock')))!), ['./base.qcow2']);

  // A file that is not what image.checksum names is left for base-image to report: no pin.
  const wrong = { image: { base: './base.qcow2', checksum: `sha256:${'0'.repeat(64)}` }, dir } as unknown as typeof config;
  const o2 = { ...o, project: { ...o.project, machines: [wrong] } } as OpenProject;
  assert.deepEqual((await pinMissing(o2, [wrong])).map((c) => [c.image, c.change]), [['./base.qcow2', 'removed']]);
  assert.deepEqual(await readLock(join(dir, 'rum.lock')), {});
});

test('diffPins: added, changed, removed and same, in the lock order', () => {
  const p = PINS['debian-12']!;
  const moved = { ...p, url: p.url!.replace(/20250115-1993/g, '20250201-1100'), digest: D256 };
  assert.deepEqual(
    diffPins({ b: p, c: p, d: p }, { a: p, b: moved, d: p }).map((c) => [c.image, c.change]),
    [['a', 'added'], ['b', 'changed'], ['c', 'removed'], ['d', 'same']],
  );
});

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rum-lock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}
