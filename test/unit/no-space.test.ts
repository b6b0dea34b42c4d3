// A full disk where rum keeps a VM: at several sizes (the lock, the state record, the overlay run
// out in turn) the command ends with one clear error naming the filesystem, leaves no temp file
// and nothing half-written, and once there is room the next run converges. Needs root (mount).
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { execa } from 'execa';
import { TestHttpServer } from '../helpers/http-server.js';
import { run, rumBin, scratchProject } from '../helpers/rig.js';
import { tally } from '../helpers/tally.js';

const root = process.geteuid?.() === 0;

test('out of space in the VM directory: a clean error at every size, then convergence', { skip: !root && 'needs root to mount a small tmpfs' }, async (t) => {
  const p = await scratchProject(t, { image: { base: 'base.qcow2' } });
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(p.dir, 'base.qcow2'), '1G']);
  const fs = join(p.root, 'small');
  await mkdir(fs);
  const env = { XDG_DATA_HOME: fs };
  const vmDir = join(fs, 'rum', 'proj');
  let held = 0;
  const sizes = [4, 8, 40, 100, 200];
  for (const kb of sizes) {
    await execa('mount', ['-t', 'tmpfs', '-o', `size=${kb}k,mode=0755`, 'tmpfs', fs]);
    try {
      const r = await execa(process.execPath, [rumBin, 'build', 'overlay'], {
        cwd: p.dir,
        env: { ...p.env, ...env },
        reject: false,
        stdin: 'ignore',
      });
      assert.equal(r.exitCode, 11, `${kb} KiB: exit ${r.exitCode}\n${r.stderr}`);
      assert.match(r.stderr, new RegExp(`error: .*out of space on ${fs} writing ${vmDir}/`), `${kb} KiB`);
      assert.match(r.stderr, /hint: make room on that filesystem/);
      assert.doesNotMatch(r.stderr, /rum hit a bug|at .*\.js:\d+/);
      const files = await readdir(vmDir).catch(() => [] as string[]);
      assert.deepEqual(files.filter((f) => f.includes('.tmp-')), [], `${kb} KiB: temp files left: ${files}`);
      if (files.includes('state.json')) JSON.parse(await readFile(join(vmDir, 'state.json'), 'utf8'));
      if (files.includes('disk.qcow2')) await run('qemu-img', ['check', join(vmDir, 'disk.qcow2')]);
      // Room again: the same filesystem, grown; the next run builds the rest and stops there.
      await execa('mount', ['-o', 'remount,size=4m', fs]);
      const again = await execa(process.execPath, [rumBin, 'build', 'overlay', '--json'], { cwd: p.dir, env: { ...p.env, ...env }, reject: false, stdin: 'ignore' });
      assert.equal(again.exitCode, 0, again.stderr);
      await run('qemu-img', ['check', join(vmDir, 'disk.qcow2')]);
      const third = await execa(process.execPath, [rumBin, 'build', 'overlay', '--json'], { cwd: p.dir, env: { ...p.env, ...env }, reject: false, stdin: 'ignore' });
      assert.deepEqual(JSON.parse(third.stdout).built, [], 'converged: nothing left to build');
      held++;
    } finally {
      await execa('umount', [fs]);
    }
  }
  await rmdir(fs);
  tally('fault', 'VM directory out of space (tmpfs of 4-200 KiB)', sizes.length, held);
});

test('out of space in the image cache: a clean error naming it, then the download converges', { skip: !root && 'needs root to mount a small tmpfs' }, async (t) => {
  const srv = await TestHttpServer.start();
  t.after(() => srv.close());
  const image = Buffer.alloc(3 * 2 ** 20, 1); // a raw disk to rum: boot signature at 510
  image.writeUInt16BE(0x55aa, 510);
  srv.file('/disk.raw', { body: image });
  const checksum = `sha256:${createHash('sha256').update(image).digest('hex')}`;
  const p = await scratchProject(t, { image: { base: srv.url('/disk.raw'), checksum } });
  const fs = join(p.root, 'cache');
  await mkdir(fs);
  const sizes = ['16k', '1m', '2m'];
  let held = 0;
  for (const size of sizes) {
    await execa('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', fs]);
    try {
      const r = await execa(process.execPath, [rumBin, 'build', 'base-image'], { cwd: p.dir, env: p.env, reject: false, stdin: 'ignore' });
      assert.equal(r.exitCode, 11, `${size}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`error: .*out of space on ${fs} writing ${fs}/rum/.*\\(.*free, [\\d.]+ (bytes|KiB|MiB) needed\\)`), size);
      noTmp(await listAll(fs));
      await execa('mount', ['-o', 'remount,size=16m', fs]);
      const again = await execa(process.execPath, [rumBin, 'build', 'base-image'], { cwd: p.dir, env: p.env, reject: false, stdin: 'ignore' });
      assert.equal(again.exitCode, 0, again.stderr);
      noTmp(await listAll(fs));
      const third = await execa(process.execPath, [rumBin, 'build', 'base-image', '--json'], { cwd: p.dir, env: p.env, reject: false, stdin: 'ignore' });
      assert.deepEqual(JSON.parse(third.stdout).built, []);
      held++;
    } finally {
      await execa('umount', [fs]);
    }
  }
  tally('fault', 'image cache out of space (tmpfs of 16 KiB-2 MiB)', sizes.length, held);
});

async function listAll(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String);
}
function noTmp(files: string[]): void {
  assert.deepEqual(files.filter((f) => /\.tmp-\d+-\d+$/.test(f)), [], `temp files left: ${files}`);
}
