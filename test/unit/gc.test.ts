// rum images and rum gc on fabricated caches: real qcow2 chains made with `qemu-img create -b` in
// a temp XDG_CACHE_HOME / XDG_DATA_HOME. What a disk backs on is kept whatever its state record
// says; what nothing uses goes; nothing outside the cache is ever removed; a run using the cache
// makes gc refuse. No libvirt, no network.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { acquireLock } from '../../src/files/lock.js';
import { lockForGc, useCache } from '../../src/image/cache-use.js';
import { collectGarbage, listImages } from '../../src/image/gc.js';
import { imageCacheDir, vmsRoot } from '../../src/paths.js';
import { RumError } from '../../src/errors.js';
import { scratchProject } from '../helpers/rig.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface Box {
  root: string;
  env: NodeJS.ProcessEnv;
  cache: string;
  vms: string;
}

function sandbox(t: TestContext): Box {
  const root = mkdtempSync(join(tmpdir(), 'rum-gc-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const env = { XDG_CACHE_HOME: join(root, 'cache'), XDG_DATA_HOME: join(root, 'data') } as NodeJS.ProcessEnv;
  const box = { root, env, cache: imageCacheDir(env), vms: vmsRoot(env) };
  mkdirSync(box.cache, { recursive: true });
  mkdirSync(box.vms, { recursive: true });
  return box;
}

function qcow(path: string, backing?: string): string {
  mkdirSync(join(path, '..'), { recursive: true });
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', ...(backing ? ['-F', 'qcow2', '-b', backing] : []), path, '4M']);
  return path;
}

/** A base image in the cache, named as cache.ts names it; `letter` makes its digest. */
function base(b: Box, letter: string, url?: string): string {
  const hex = letter.repeat(64);
  const path = qcow(join(b.cache, `sha256-${hex}.img`));
  if (url) {
    mkdirSync(join(b.cache, 'by-url'), { recursive: true });
    writeFileSync(join(b.cache, 'by-url', `${letter.repeat(32)}.json`), JSON.stringify({ url, digest: `sha256:${hex}`, file: `sha256-${hex}.img` }));
  }
  return path;
}

/** A layer as layer-store.ts names it: one file per build, the key's record naming it. */
function layer(b: Box, key: string, on: string, meta: object | string | undefined = { key, file: `${key}-0a0b0c0d.qcow2`, base: { path: on, digest: 'x' }, packages: ['curl'], created: '2025-01-01T00:00:00.000Z', extra: 1 }): string {
  const path = qcow(join(b.cache, 'layers', `${key}-0a0b0c0d.qcow2`), on);
  if (meta !== undefined) writeFileSync(join(b.cache, 'layers', `${key}.json`), typeof meta === 'string' ? meta : JSON.stringify(meta));
  return path;
}

/** A VM directory: its disk on `on`, owner.json, and a state record (or damaged text). */
function vm(b: Box, name: string, opts: { on?: string; state?: object | string | null; owner?: boolean } = {}): string {
  const dir = join(b.vms, name);
  mkdirSync(dir, { recursive: true });
  if (opts.on) qcow(join(dir, 'disk.qcow2'), opts.on);
  if (opts.owner !== false) writeFileSync(join(dir, 'owner.json'), JSON.stringify({ config: `/p/${name}/rum.yaml` }));
  if (opts.state !== undefined && opts.state !== null) writeFileSync(join(dir, 'state.json'), typeof opts.state === 'string' ? opts.state : JSON.stringify(opts.state));
  return dir;
}

/** A state record as the engine writes it, with the base-image (and layer) node's data.path. */
function stateFor(paths: { base?: string; layer?: string }): object {
  const rec = (path: string) => ({ key: 'k', fields: {}, output: 'o', data: { path, format: 'qcow2', virtualSize: 4194304 }, time: '2025-01-01T00:00:00.000Z' });
  return {
    version: 1,
    generation: 1,
    nodes: { ...(paths.base ? { 'base-image': rec(paths.base) } : {}), ...(paths.layer ? { layer: rec(paths.layer) } : {}) },
  };
}

const removedPaths = (r: { removed: { path: string }[] }) => r.removed.map((x) => x.path).sort();

test('a base used only through a layer is kept; a base and a layer no VM uses go, with their records', async (t) => {
  const b = sandbox(t);
  const a = base(b, 'a', 'https://example.test/a.img');
  const unused = base(b, 'b', 'https://example.test/b.img');
  const used = layer(b, 'l1', a);
  const orphan = layer(b, 'l2', a);
  vm(b, 'web', { on: used, state: stateFor({ layer: used }) });

  const images = await listImages(b.env);
  const row = (p: string) => images.images.find((i) => i.path === p)!;
  assert.deepEqual(row(a).usedBy, [{ vm: 'web', config: '/p/web/rum.yaml' }], 'the base counts as used through the layer');
  assert.deepEqual(row(a).urls, ['https://example.test/a.img']);
  assert.deepEqual([row(used).kind, row(used).key, row(used).packages, row(used).base], ['layer', 'l1', ['curl'], a]);
  assert.deepEqual(row(unused).usedBy, []);
  assert.deepEqual(row(orphan).usedBy, []);
  assert.ok(images.images.every((i) => i.bytes! > 0), 'sizes are blocks on disk');

  const r = await collectGarbage({ env: b.env });
  assert.deepEqual(removedPaths(r), [unused, join(b.cache, 'by-url', `${'b'.repeat(32)}.json`), orphan, join(b.cache, 'layers', 'l2.json')].sort());
  assert.deepEqual(r.removed.find((x) => x.kind === 'base')!.key, `sha256:${'b'.repeat(64)}`);
  assert.ok(!existsSync(unused) && !existsSync(orphan));
  assert.ok(existsSync(a) && existsSync(used) && existsSync(join(b.cache, 'by-url', `${'a'.repeat(32)}.json`)));
  assert.equal(r.bytes, r.removed.reduce((n, x) => n + x.bytes, 0));
  assert.deepEqual(r.kept.map((k) => k.path).sort(), [a, used].sort());
  assert.deepEqual(removedPaths(await collectGarbage({ env: b.env })), [], 'a second run has nothing to do');
});

test('a VM with a damaged state record, or none, keeps the layer its disk backs on and that layer\'s base', async (t) => {
  const b = sandbox(t);
  const a = base(b, 'a');
  const c = base(b, 'c');
  const l1 = layer(b, 'l1', a, '{ not json');
  const l2 = layer(b, 'l2', c, undefined);
  vm(b, 'web', { on: l1, state: '{"version": 1, "nodes": {"base-image": 42' });
  vm(b, 'db', { on: l2, state: null, owner: false }); // only a disk is left: still a disk
  const r = await collectGarbage({ env: b.env });
  assert.deepEqual(r.removed, []);
  for (const f of [a, c, l1, l2]) assert.ok(existsSync(f), f);
  const images = await listImages(b.env);
  assert.deepEqual(images.images.find((i) => i.path === l1)!.packages, null, 'damaged metadata: still a layer');
  assert.deepEqual(images.images.find((i) => i.path === c)!.usedBy, [{ vm: 'db', config: null }]);
});

test("a snapshot layer's chain counts, and so do the paths a state record names for a VM without a disk", async (t) => {
  const b = sandbox(t);
  const a = base(b, 'a');
  const c = base(b, 'c');
  const d = base(b, 'd');
  const gone = base(b, 'e');
  const l1 = layer(b, 'l1', a);
  const dir = vm(b, 'web', { on: c }); // restored onto a fresh base after a snapshot on l1
  qcow(join(dir, 'layers', 's1.qcow2'), l1);
  vm(b, 'db', { state: stateFor({ base: d }) }); // base-image built, the disk not yet
  const r = await collectGarbage({ env: b.env });
  assert.deepEqual(removedPaths(r), [gone]);
  const images = await listImages(b.env);
  assert.deepEqual(images.images.find((i) => i.path === a)!.usedBy.map((u) => u.vm), ['web']);
  assert.deepEqual(images.images.find((i) => i.path === d)!.usedBy.map((u) => u.vm), ['db']);
});

test('a chain that cannot be read: what the state record names is kept; with no record, everything is', async (t) => {
  const b = sandbox(t);
  const a = base(b, 'a');
  const c = base(b, 'c');
  const l1 = layer(b, 'l1', a, undefined);
  const missing = join(b.root, 'moved-away.img');
  qcow(missing);
  vm(b, 'web', { on: missing, state: stateFor({ base: missing, layer: l1 }) });
  rmSync(missing); // the disk now backs on nothing qemu-img can open
  let r = await collectGarbage({ env: b.env, dryRun: true });
  assert.deepEqual(removedPaths(r), [c], 'l1 is recorded, and a is what l1 sits on');
  assert.deepEqual(r.notes.map((n) => [n.type, 'kept' in n ? n.kept : null]), [['chain-unreadable', 'recorded']]);

  const goes = qcow(join(b.root, 'goes.img'));
  vm(b, 'db', { on: goes, state: '{}' }); // a record that names nothing
  rmSync(goes);
  r = await collectGarbage({ env: b.env, dryRun: true });
  assert.deepEqual(r.removed, [], 'db could use anything');
  assert.ok(r.notes.some((n) => n.type === 'chain-unreadable' && n.vm === 'db' && n.kept === 'everything'));
});

test('--dry-run lists what would go and the space, and removes nothing', async (t) => {
  const b = sandbox(t);
  const a = base(b, 'a', 'https://example.test/a.img');
  const l1 = layer(b, 'l1', a);
  mkdirSync(join(b.cache, 'in-use'));
  const dead = join(b.cache, 'in-use', '1-dead.json');
  writeFileSync(dead, JSON.stringify({ pid: process.pid, start: 'long-ago', host: hostname(), command: 'up' }));
  const before = [...readdirSync(b.cache), ...readdirSync(join(b.cache, 'layers'))].sort();
  const r = await collectGarbage({ env: b.env, dryRun: true });
  assert.ok(existsSync(dead), 'not even a dead use record is removed');
  assert.equal(r.dryRun, true);
  assert.deepEqual(r.removed.map((x) => x.kind).sort(), ['base', 'by-url', 'layer', 'layer-meta']);
  assert.ok(r.bytes > 0);
  assert.ok(existsSync(a) && existsSync(l1));
  assert.deepEqual([...readdirSync(b.cache), ...readdirSync(join(b.cache, 'layers'))].sort(), before);
});

test('a live use record makes gc refuse; a dead one is cleared', async (t) => {
  const b = sandbox(t);
  const a = base(b, 'a');
  mkdirSync(join(b.cache, 'in-use'), { recursive: true });
  const dead = join(b.cache, 'in-use', '1-dead.json');
  // This very PID, but another start time: the process that wrote it is gone (a reused PID).
  writeFileSync(dead, JSON.stringify({ pid: process.pid, start: 'long-ago', host: hostname(), command: 'up' }));
  const use = await useCache({ env: b.env });
  await assert.rejects(collectGarbage({ env: b.env }), (err: unknown) => {
    assert.ok(err instanceof RumError && err.code === 'LOCKED', String(err));
    assert.match(err.message, /the image cache is in use by rum .*\(pid \d+\)/);
    assert.match(err.hint ?? '', /run rum gc again once it has finished/);
    return true;
  });
  assert.ok(existsSync(a), 'nothing removed');
  assert.ok(!existsSync(dead), 'the dead record is cleared');
  assert.ok(!existsSync(join(b.cache, 'gc.lock')), 'gc.lock released after refusing');
  await use.release();
  assert.deepEqual(readdirSync(join(b.cache, 'in-use')), []);
  assert.deepEqual(removedPaths(await collectGarbage({ env: b.env })), [a]);
});

test('a run registering its use waits while gc holds gc.lock', async (t) => {
  const b = sandbox(t);
  const gc = await lockForGc(b.cache);
  const waited: number[] = [];
  const pending = useCache({ env: b.env, onWait: (h) => waited.push(h.pid) });
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(readdirSync(join(b.cache, 'in-use')), [], 'no record while gc holds the lock');
  await gc.release();
  const use = await pending;
  assert.deepEqual(waited, [process.pid]);
  assert.equal(readdirSync(join(b.cache, 'in-use')).length, 1);
  await use.release();
});

test('nothing outside the cache is removed: a symlinked layers/, a local base, an entry naming a path', async (t) => {
  const b = sandbox(t);
  const a = base(b, 'a');
  const outside = join(b.root, 'elsewhere');
  mkdirSync(outside);
  qcow(join(outside, 'l9-0a0b0c0d.qcow2'), a);
  symlinkSync(outside, join(b.cache, 'layers'));
  const local = qcow(join(b.root, 'my-image.qcow2'));
  vm(b, 'web', { on: local, state: stateFor({ base: local }) });
  const victim = qcow(join(b.root, 'victim.img'));
  mkdirSync(join(b.cache, 'by-url'));
  writeFileSync(join(b.cache, 'by-url', 'f'.repeat(32) + '.json'), JSON.stringify({ url: 'https://x.test/', file: '../../../victim.img' }));

  const images = await listImages(b.env);
  assert.deepEqual(images.images.find((i) => i.kind === 'local'), {
    kind: 'local', path: local, key: null, bytes: images.images.find((i) => i.kind === 'local')!.bytes, urls: [], packages: null, base: null, created: null,
    usedBy: [{ vm: 'web', config: '/p/web/rum.yaml' }],
  });
  const r = await collectGarbage({ env: b.env });
  assert.deepEqual(removedPaths(r), [a], 'the unused base in the cache goes');
  assert.ok(r.notes.some((n) => n.type === 'outside-cache' && n.path === join(b.cache, 'layers', 'l9-0a0b0c0d.qcow2')));
  for (const f of [join(outside, 'l9-0a0b0c0d.qcow2'), local, victim]) assert.ok(existsSync(f), f);
});

test('leftovers: an old download and a build whose lock is free go; a fresh download and a live build stay', async (t) => {
  const b = sandbox(t);
  const a = base(b, 'a');
  mkdirSync(join(b.cache, 'incoming'));
  const old = join(b.cache, 'incoming', `${'1'.repeat(32)}.img.partial`);
  const fresh = join(b.cache, 'incoming', `${'2'.repeat(32)}.img.partial`);
  writeFileSync(old, 'x'.repeat(5000));
  writeFileSync(fresh, 'y');
  const twoDaysAgo = (Date.now() - 2 * 86400_000) / 1000;
  utimesSync(old, twoDaysAgo, twoDaysAgo);
  const stale = join(b.cache, 'layers', 'build-k1');
  mkdirSync(join(stale, 'sub'), { recursive: true });
  writeFileSync(join(stale, 'sub', 'builder.qcow2'), 'z');
  const live = join(b.cache, 'layers', 'build-k2');
  mkdirSync(live);
  const lock = await acquireLock(join(b.cache, 'layers', 'k2.lock'), { what: 'test build' });
  t.after(() => lock.release());

  const r = await collectGarbage({ env: b.env });
  assert.deepEqual(removedPaths(r), [old, stale]);
  assert.ok(existsSync(fresh) && existsSync(live) && existsSync(a), 'the live build keeps every base');
  assert.ok(r.notes.some((n) => n.type === 'layer-building' && n.key === 'k2'));
  await lock.release();
  assert.deepEqual(removedPaths(await collectGarbage({ env: b.env })), [a, live].sort());
});

test('rum images and rum gc on the command line: text, --json, exit 3 when refused', async (t) => {
  const b = sandbox(t);
  const a = base(b, 'a', 'https://example.test/a.img');
  const c = base(b, 'c');
  vm(b, 'web', { on: layer(b, 'l1', a), state: stateFor({ base: a }) });
  const rum = (...args: string[]) => spawnSync(process.execPath, [MAIN, ...args], { env: { ...process.env, ...b.env, NO_COLOR: '1' }, encoding: 'utf8' });

  const images = rum('images');
  assert.equal(images.status, 0, images.stderr);
  assert.match(images.stdout, /^base {3}sha256:aaaaaaaaaaaaaaaa… {2}\S+ KiB\n {7}from https:\/\/example\.test\/a\.img\n {7}used by web \(\/p\/web\/rum\.yaml\)$/m);
  assert.match(images.stdout, /^layer {2}l1 .*\n {7}packages: curl; on sha256:aaaaaaaaaaaaaaaa…\n/m);
  assert.match(images.stdout, /^3 cached images, .*; 1 used by no VM/m);
  const json = JSON.parse(rum('images', '--json').stdout);
  assert.deepEqual(Object.keys(json.images[0]), ['kind', 'path', 'key', 'bytes', 'urls', 'packages', 'base', 'created', 'usedBy']);

  const dry = rum('gc', '--dry-run');
  assert.equal(dry.status, 0, dry.stderr);
  assert.match(dry.stdout, /^would remove base sha256:cccccccccccccccc… \(\S+ KiB\)\nwould free \S+ KiB \(`rum gc` removes them\); 2 images kept\n$/);
  assert.ok(existsSync(c));

  const use = await useCache({ env: b.env });
  const refused = rum('gc', '--json');
  assert.equal(refused.status, 3);
  assert.equal(JSON.parse(refused.stdout).error.code, 'LOCKED');
  await use.release();
  const done = JSON.parse(rum('gc', '--json').stdout);
  assert.deepEqual(done.removed.map((x: { path: string }) => x.path), [c]);
  assert.ok(!existsSync(c));
});

test('a graph run waits for a gc under way, and leaves no use record behind', async (t) => {
  const p = await scratchProject(t, { image: { base: 'debian-12' } });
  const cache = imageCacheDir(p.env);
  mkdirSync(cache, { recursive: true });
  const gc = await lockForGc(cache);
  const build = p.rum('build', 'user-data');
  // The project's lock is taken just before the cache use is registered.
  for (let i = 0; i < 200 && !existsSync(p.vmFile('lock')); i++) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(!existsSync(p.vmFile('user-data')), 'nothing is built while gc holds the cache');
  await gc.release();
  const r = await build;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /waiting for rum .* \(pid \d+\) to finish with the image cache/);
  assert.ok(existsSync(p.vmFile('user-data')));
  assert.deepEqual(readdirSync(join(cache, 'in-use')), []);
});
