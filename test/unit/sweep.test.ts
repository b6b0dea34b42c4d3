// The temp files a killed rum leaves (`<file>.tmp-<pid>-<n>`) are swept when a VM's lock is
// taken: only rum's own names, only once their writer is gone, and never anything else.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { tempPath } from '../../src/files/atomic.js';
import { sweepTemps, tempWriter } from '../../src/files/sweep.js';
import { Machine } from '../../src/machine/machine.js';
import { lockProject, type OpenProject } from '../../src/machine/project.js';
import { VmDir } from '../../src/paths.js';
import type { Config } from '../../src/config/schema.js';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'rum-sweep-'));
});
after(() => rm(root, { recursive: true, force: true }));

let n = 0;
const scratch = async () => {
  const d = join(root, `d${++n}`);
  await mkdir(d, { recursive: true });
  return d;
};

/** A file last written `agoMs` before now. */
async function file(path: string, agoMs = 60_000): Promise<string> {
  await writeFile(path, 'x');
  const t = (Date.now() - agoMs) / 1000;
  await utimes(path, t, t);
  return path;
}

/** The PID of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((r) => child.once('exit', r));
  return child.pid!;
}

test('the name pattern is tempPath()\'s own, and nothing else', () => {
  assert.equal(tempWriter(tempPath('/vm/state.json').split('/').pop()!), process.pid);
  assert.equal(tempWriter('id_ed25519.tmp-123-4'), 123);
  for (const name of ['state.json', 'disk.qcow2.partial', 'lock', 'x.tmp-abc-1', 'x.tmp-1', '.tmp-1-2', 'x.tmp-1-2.json', 'x.stale-1-2'])
    assert.equal(tempWriter(name), undefined, name);
});

test('a dead writer\'s temp files go; everything else stays', async () => {
  const d = await scratch();
  const dead = await deadPid();
  const gone = [await file(join(d, `state.json.tmp-${dead}-1`)), await file(join(d, `id_ed25519.tmp-${dead}-7`))];
  const kept = [
    await file(join(d, 'state.json')),
    await file(join(d, 'disk.qcow2')),
    await file(join(d, `notes.tmp-${dead}`)), // not rum's pattern
    await file(join(d, `seed.iso.tmp-${dead}-2`), 0), // written after the lock was taken
  ];
  await mkdir(join(d, `dir.tmp-${dead}-3`)); // a directory is never a temp file of rum's
  await symlink('/etc/hostname', join(d, `link.tmp-${dead}-4`));
  const removed = await sweepTemps(d, { before: Date.now() - 1000 });
  assert.deepEqual(removed.sort(), gone.sort());
  assert.deepEqual((await readdir(d)).sort(), [...kept.map((p) => p.split('/').pop()!), `dir.tmp-${dead}-3`, `link.tmp-${dead}-4`].sort());
});

test('a live writer\'s temp files stay: another process, and this one\'s own', async (t) => {
  const d = await scratch();
  const child = spawn('sleep', ['30']);
  t.after(() => child.kill());
  await new Promise((r) => child.once('spawn', r));
  await new Promise((r) => setTimeout(r, 50));
  const theirs = await file(join(d, `digests.json.tmp-${child.pid}-1`), 0); // a `rum status` writing now
  const mine = await file(join(d, `owner.json.tmp-${process.pid}-1`), 0);
  assert.deepEqual(await sweepTemps(d, { before: Date.now() + 1000 }), []);
  assert.deepEqual((await readdir(d)).sort(), [theirs, mine].map((p) => p.split('/').pop()!).sort());
});

test('a PID reused since the file was written does not keep it', async () => {
  const d = await scratch();
  // This process's PID, on a file older than this process: a killed rum that had the same PID.
  const old = await file(join(d, `state.json.tmp-${process.pid}-1`), (process.uptime() + 60) * 1000);
  // Another PID, alive now, but started after the file was last written.
  const reused = await file(join(d, `state.json.tmp-4242-1`), 60_000);
  const heldStill = await file(join(d, `state.json.tmp-4343-1`), 60_000);
  const startedAt = async (pid: number) => (pid === process.pid ? Date.now() - process.uptime() * 1000 : pid === 4242 ? Date.now() - 1000 : Date.now() - 3_600_000);
  const removed = await sweepTemps(d, { before: Date.now(), startedAt });
  assert.deepEqual(removed.sort(), [old, reused].sort());
  assert.deepEqual(await readdir(d), [heldStill.split('/').pop()]);
});

test('the image cache: down to the depth asked', async () => {
  const d = await scratch();
  await mkdir(join(d, 'incoming'));
  await mkdir(join(d, 'incoming', 'deeper'));
  const dead = await deadPid();
  const old = await file(join(d, 'incoming', `j.json.tmp-${dead}-1`), 5 * 60_000);
  const tooDeep = await file(join(d, 'incoming', 'deeper', `k.json.tmp-${dead}-1`), 5 * 60_000);
  assert.deepEqual(await sweepTemps(d, { before: Date.now() }), [], 'depth 0 does not look in incoming/');
  assert.deepEqual(await sweepTemps(d, { before: Date.now(), depth: 1 }), [old]);
  assert.deepEqual(await readdir(join(d, 'incoming')), ['deeper']);
  assert.deepEqual(await readdir(join(d, 'incoming', 'deeper')), [tooDeep.split('/').pop()]);
  assert.deepEqual(await sweepTemps(join(d, 'no-such-dir'), { before: Date.now() }), [], 'a missing directory is nothing to sweep');
});

test('taking a VM\'s lock sweeps its directory and the image cache', async (t) => {
  const data = await scratch();
  const cache = await scratch();
  const saved = { data: process.env.XDG_DATA_HOME, cache: process.env.XDG_CACHE_HOME };
  process.env.XDG_DATA_HOME = data;
  process.env.XDG_CACHE_HOME = cache;
  t.after(() => {
    for (const [k, v] of [['XDG_DATA_HOME', saved.data], ['XDG_CACHE_HOME', saved.cache]] as const)
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  });
  const vm = new VmDir('sweepy');
  const images = join(cache, 'rum', 'images', 'by-url');
  await mkdir(vm.dir, { recursive: true });
  await mkdir(images, { recursive: true });
  const dead = await deadPid();
  for (const name of [`state.json.tmp-${dead}-1`, `lock.tmp-${dead}-2`, `disk.qcow2.tmp-${dead}-3`]) await file(join(vm.dir, name));
  await file(join(images, `abc.json.tmp-${dead}-1`), 2 * 3_600_000);
  const config = { name: 'sweepy', file: join(data, 'rum.yaml'), libvirt: { uri: 'qemu:///system' }, ssh: { user: 'dev' } } as unknown as Config;
  const m = new Machine({ ...config, machine: 'sweepy', after: [] }, vm);
  const o = { project: { name: 'sweepy', file: config.file, dir: data, single: true, machines: [m.config] }, machines: [m], env: process.env, claimed: new Set() } as OpenProject;
  const lock = await lockProject(o, [m], { noWait: true });
  await lock.release();
  assert.deepEqual((await readdir(vm.dir)).sort(), ['owner.json']);
  assert.deepEqual(await readdir(images), []);
});
