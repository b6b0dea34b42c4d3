// rum cp against a real guest: a tree with nested directories, an executable and a 50 MB file,
// up and back down, compared byte for byte with modes; relative guest paths are the user's home.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DOMAIN_PREFIX, bootSkipReason, tail } from './env.js';
import { e2eProject } from './rum.js';

test('rum cp: a tree both ways, byte for byte with modes; errors for bad arguments', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const p = await e2eProject(t, {
    name: `${DOMAIN_PREFIX}cp`,
    image: { base: 'debian-12' },
    resources: { cpus: 1, memory: '1G', disk: '3G' },
    network: { mode: 'user' },
  });
  const src = join(p.dir, 'tree');
  const files: Record<string, { data: Buffer; mode: number }> = {
    'a.txt': { data: Buffer.from('alpha\n'), mode: 0o644 },
    'bin/run.sh': { data: Buffer.from('#!/bin/sh\necho ran\n'), mode: 0o755 },
    'deep/er/still/x.bin': { data: randomBytes(4096), mode: 0o600 },
    'big.bin': { data: randomBytes(50 * 2 ** 20), mode: 0o644 },
  };
  for (const [rel, f] of Object.entries(files)) {
    await mkdir(join(src, rel, '..'), { recursive: true });
    await writeFile(join(src, rel), f.data);
    await chmod(join(src, rel), f.mode);
  }
  const up = await p.rumJson('up');
  assert.equal(up.ok, true, `${JSON.stringify(up.failure)}\n${tail(join(p.vmDir, 'console.log'))}`);

  const toGuest = await p.rum('cp', src, ':tree');
  assert.equal(toGuest.code, 0, toGuest.stderr);
  assert.equal((await p.exec('cd ~/tree && ./bin/run.sh')).stdout, 'ran\n', 'relative guest paths are in the home; modes kept');
  const sums = (await p.exec('cd ~/tree && sha256sum a.txt bin/run.sh deep/er/still/x.bin big.bin')).stdout;
  const { createHash } = await import('node:crypto');
  for (const [rel, f] of Object.entries(files)) assert.match(sums, new RegExp(`^${createHash('sha256').update(f.data).digest('hex')}  ${rel}$`, 'm'));

  const back = join(p.dir, 'back');
  const toHost = await p.rum('cp', ':tree', back);
  assert.equal(toHost.code, 0, toHost.stderr);
  for (const [rel, f] of Object.entries(files)) {
    assert.deepEqual(await readFile(join(back, rel)), f.data, rel);
    assert.equal((await stat(join(back, rel))).mode & 0o777, f.mode, `${rel} mode`);
  }

  const both = await p.rum('cp', ':a', ':b');
  assert.equal(both.code, 2);
  assert.match(both.stderr, /hint:/);
  assert.equal((await p.rum('cp', 'a', 'b')).code, 2);
  const missing = await p.rum('cp', join(p.dir, 'nope'), ':x');
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /nope/);
});
