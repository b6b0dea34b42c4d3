// `rum update` under the project's lock, as `rum up` pins under it: while another run holds the
// lock, update waits (and writes rum.lock only once it has it) or, with --no-wait, exits 3 and
// writes nothing. It claims no VM directory: updating the pins makes no VM.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { execa } from 'execa';
import { lockProject, openProject } from '../../src/machine/project.js';
import { rumBin, scratchProject } from '../helpers/rig.js';

// A local image: pinned by its content, nothing downloaded.
const single = { name: 'upd', image: { base: './disk.qcow2' } };
const several = { name: 'upds', image: { base: './disk.qcow2' }, machines: { db: {}, web: {} } };

for (const [shape, config] of [['one VM', single], ['machines', several]] as const) {
  test(`${shape}: update waits for the project's lock, or with --no-wait fails and writes nothing`, async (t) => {
    const p = await scratchProject(t, config, { name: config.name });
    const disk = join(p.dir, 'disk.qcow2');
    const lockFile = join(p.dir, 'rum.lock');
    await writeFile(disk, randomBytes(4096));

    // Before any `up`: the lock is taken where `up` takes it, and no VM is claimed.
    assert.equal((await p.rum('update', '--no-wait')).code, 0);
    const first = await readFile(lockFile, 'utf8');
    const vmDirs = config === single ? ['upd'] : ['upds-db', 'upds-web'];
    for (const d of vmDirs) assert.equal(existsSync(join(p.root, 'data', 'rum', d, 'owner.json')), false, `${d} is not claimed`);

    // A run holds the project's lock (as `rum up` does) while the image changes.
    const o = await openProject({ cwd: p.dir, env: p.env });
    const held = await lockProject(o, o.machines, {});
    let released = false;
    t.after(() => (released ? undefined : held.release()));
    await writeFile(disk, randomBytes(4096));

    const busy = await p.rum('update', '--no-wait');
    assert.equal(busy.code, 3, busy.stderr);
    assert.match(busy.stderr, new RegExp(`is busy: another rum \\(pid ${process.pid}`));
    assert.equal(await readFile(lockFile, 'utf8'), first, '--no-wait wrote nothing');

    const child = execa(process.execPath, [rumBin, 'update'], { cwd: p.dir, env: p.env, reject: false, stdin: 'ignore' });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d));
    const deadline = Date.now() + 30_000;
    while (!stderr.includes(`waiting for rum (pid ${process.pid})`)) {
      assert.ok(Date.now() < deadline && child.exitCode === null, `update did not wait for the lock:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(await readFile(lockFile, 'utf8'), first, 'nothing written while the lock is held');
    released = true;
    await held.release();
    const r = await child;
    assert.equal(r.exitCode, 0, r.stderr);
    assert.notEqual(await readFile(lockFile, 'utf8'), first, 'the new pin, written once the lock was had');
  });
}
