// Shared folders against a real guest (qemu:///system): virtiofs (auto), 9p (forced) and a
// read-only share (auto picks 9p to enforce it on the host); both directions, in fstab with
// nofail. Session mode's 9p is covered by the session test in up.test.ts.
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { chown, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DOMAIN_PREFIX, TEST_USER, bootSkipReason, repoUrl, tail, userIds } from './env.js';
import { e2eProject } from './rum.js';
import { rename, rm } from 'node:fs/promises';

test('mounts: virtiofs and 9p both ways, read-only refused, fstab nofail (system)', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const p = await e2eProject(t, {
    name: `${DOMAIN_PREFIX}mounts`,
    image: { base: 'debian-12' },
    resources: { cpus: 1, memory: '1G', disk: '3G' },
    network: { mode: 'user' },
    mounts: [
      { source: './vfs', target: '/work', inotify: true, ignore: ['*.tmp'] },
      { source: './p9', target: '/p9', type: '9p' },
      { source: './ro', target: '/ro', readonly: true },
    ],
    provision: {
      packages: ['inotify-tools'],
      apt_sources: [`deb [trusted=yes] ${repoUrl('slirp')} ./`],
      system: 'ls /work > /var/lib/rum/work-at-first-boot\n',
    },
  }, { suiteCache: true });
  // rum as root in a checkout that belongs to a user (sudo, CI on a user's clone): the guest's
  // user is that user, so it may write the shares and what it writes is theirs.
  const owner = userIds(TEST_USER);
  await chown(p.dir, owner.uid, owner.gid);
  for (const d of ['vfs', 'p9', 'ro']) {
    await mkdir(join(p.dir, d));
    await chown(join(p.dir, d), owner.uid, owner.gid);
    await writeFile(join(p.dir, d, 'from-host.txt'), `host-${d}\n`);
  }
  const up = await p.rumJson('up');
  assert.equal(up.ok, true, `${JSON.stringify(up.failure)}\n${tail(join(p.vmDir, 'console.log'))}`);

  const st = await p.rumJson('status');
  assert.deepEqual(
    st.mounts.map((m: any) => [m.target, m.type, m.readonly]),
    [['/work', 'virtiofs', false], ['/p9', '9p', false], ['/ro', '9p', true]],
  );
  assert.match((await p.exec('cat /var/lib/rum/work-at-first-boot')).stdout, /from-host\.txt/, 'mounted before the first provision script');

  for (const [d, target] of [['vfs', '/work'], ['p9', '/p9']] as const) {
    assert.equal((await p.exec(`cat ${target}/from-host.txt`)).stdout, `host-${d}\n`);
    await writeFile(join(p.dir, d, 'later.txt'), 'written after boot\n');
    assert.equal((await p.exec(`cat ${target}/later.txt`)).stdout, 'written after boot\n', `${target}: live`);
    assert.equal((await p.exec(`echo guest-${d} > ${target}/from-guest.txt`)).code, 0);
    assert.equal(await readFile(join(p.dir, d, 'from-guest.txt'), 'utf8'), `guest-${d}\n`);
    const st = await stat(join(p.dir, d, 'from-guest.txt'));
    assert.deepEqual([st.uid, st.gid], [owner.uid, owner.gid], `${target}: the guest's file belongs to the checkout's owner`);
  }
  const refused = await p.exec('echo nope > /ro/from-guest.txt');
  assert.notEqual(refused.code, 0, 'a read-only share refuses writes');
  assert.match(refused.stderr, /Read-only file system/);
  const fstab = (await p.exec('cat /etc/fstab')).stdout;
  for (const target of ['/work', '/p9', '/ro']) assert.match(fstab, new RegExp(`^\\S+ ${target} \\S+ \\S*nofail\\S* 0 0$`, 'm'));

  // The inotify bridge: with `rum watch` running, inotifywait in the guest sees host edits.
  const settle = () => new Promise((r) => setTimeout(r, 1500));
  // stdbuf: line-buffered, or the events sit in inotifywait's buffer until it exits.
  await p.exec('nohup stdbuf -oL inotifywait -m -r /work --format "%e %f" > /tmp/events 2>/dev/null & sleep 1');
  const watch = p.rumBackground('watch');
  try {
    await watch.waitFor(/^watching 1 mount/m); // rum's own word that the bridge is up, not a sleep
    const host = (f: string) => join(p.dir, 'vfs', f);
    await writeFile(host('created.txt'), 'one\n');
    await settle();
    const created = statSync(host('created.txt'), { bigint: true });
    await writeFile(host('created.txt'), 'two\n'); // one edit
    const edited = statSync(host('created.txt'), { bigint: true });
    await settle();
    const later = statSync(host('created.txt'), { bigint: true });
    t.diagnostic(`created.txt mtime: created ${created.mtimeNs}, edited ${edited.mtimeNs}, 1.5 s later ${later.mtimeNs} (ctime ${later.ctimeNs})`);
    await rename(host('created.txt'), host('renamed.txt'));
    await settle();
    await rm(host('renamed.txt'));
    await writeFile(host('ignored.tmp'), 'skip me\n');
    await settle();
  } finally {
    const w = await watch.stop();
    t.diagnostic(`rum watch said:\n${w.stderr}`);
    assert.equal(w.code, 0, `rum watch ends cleanly on Ctrl-C:\n${w.stderr}`);
  }
  const events = (await p.exec('cat /tmp/events')).stdout.trim().split('\n');
  t.diagnostic(`guest events:\n${events.join('\n')}`);
  const about = (f: string) => events.filter((e) => e.endsWith(` ${f}`));
  assert.ok(about('created.txt').some((e) => /CLOSE_WRITE|MODIFY/.test(e)), 'the create and the edit reached the guest watcher');
  // Two host writes (create, edit): two replays, each one OPEN/MODIFY/CLOSE_WRITE, not a storm.
  assert.equal(about('created.txt').filter((e) => /CLOSE_WRITE/.test(e)).length, 2);
  assert.ok(about('renamed.txt').length > 0, 'the rename reached the guest watcher under its new name');
  assert.ok(events.some((e) => /ISDIR/.test(e)), 'the delete reached the guest watcher as a change of the directory');
  assert.deepEqual(about('ignored.tmp'), [], 'ignore: patterns are honoured');
  assert.deepEqual(events.filter((e) => /^(OPEN|CLOSE_NOWRITE).*ISDIR/.test(e)), [], 'a replay does not open the directory for a few paths');

  // A burst, as a checkout makes: 900 files rewritten at once, in three directories. A batch of
  // more than 256 paths is replayed by name: one IN_MODIFY per file, and IN_CLOSE_WRITE for one
  // file per directory; a smaller batch replays each file as a write (OPEN/MODIFY/CLOSE_WRITE).
  const dirs = ['b0', 'b1', 'b2'];
  const burstFile = (d: string, i: number) => join(p.dir, 'vfs', 'burst', d, `f${i}.txt`);
  for (const d of dirs) {
    await mkdir(join(p.dir, 'vfs', 'burst', d), { recursive: true });
    for (let i = 0; i < 300; i++) await writeFile(burstFile(d, i), 'v0\n');
  }
  await p.exec('nohup stdbuf -oL inotifywait -m -r /work/burst --format "%e %w%f" > /tmp/burst-events 2>/tmp/burst-err & sleep 1');
  for (let i = 0; i < 60 && !(await p.exec('cat /tmp/burst-err')).stdout.includes('Watches established'); i++) await settle();
  const burstWatch = p.rumBackground('watch', '--json');
  let burst: { code: number; stdout: string; stderr: string };
  try {
    await burstWatch.waitFor(/"type":"ready"/);
    for (const d of dirs) for (let i = 0; i < 300; i++) writeFileSync(burstFile(d, i), 'v1\n');
    const modified = async () => Number((await p.exec('grep -c "^MODIFY " /tmp/burst-events || true')).stdout.trim());
    for (let i = 0; i < 120 && (await modified()) < 900; i++) await settle();
    await settle(); // a storm would show by now
  } finally {
    burst = await burstWatch.stop();
    assert.equal(burst.code, 0, `rum watch ends cleanly on Ctrl-C:\n${burst.stderr}`);
  }
  const batches = burst.stdout
    .split('\n')
    .filter((l) => l.includes('"batch"'))
    .map((l) => JSON.parse(l) as { records: number; paths: string[]; ack: { applied: number; errors: object } });
  t.diagnostic(`burst batches: ${batches.map((b) => b.records).join(', ')}`);
  for (const b of batches) assert.deepEqual(b.ack.errors, {}, JSON.stringify(b.ack));
  const burstEvents = (await p.exec('cat /tmp/burst-events')).stdout.trim().split('\n');
  const byPath = new Map<string, string[]>();
  for (const e of burstEvents) {
    const [ev, path] = e.split(' ') as [string, string];
    byPath.set(path, [...(byPath.get(path) ?? []), ev]);
  }
  const bigBatch = new Set(batches.filter((b) => b.records > 256).flatMap((b) => b.paths));
  assert.ok(bigBatch.size > 0, `one batch was large enough to be a burst: ${batches.map((b) => b.records).join(', ')}`);
  for (const d of dirs) {
    const paths = Array.from({ length: 300 }, (_, i) => `/work/burst/${d}/f${i}.txt`);
    for (const path of paths) {
      const evs = byPath.get(path) ?? [];
      assert.equal(evs.filter((e) => e === 'MODIFY').length, 1, `${path}: one IN_MODIFY (${evs.join(' ')})`);
      if (!bigBatch.has(path)) assert.equal(evs.filter((e) => e.startsWith('CLOSE_WRITE')).length, 1, `${path}: replayed as a write`);
    }
    const closed = paths.filter((path) => bigBatch.has(path) && (byPath.get(path) ?? []).some((e) => e.startsWith('CLOSE_WRITE')));
    if (paths.some((path) => bigBatch.has(path))) assert.ok(closed.length >= 1, `${d}: a close_write watcher hears of the burst`);
    assert.ok(closed.length <= batches.length, `${d}: in a burst, IN_CLOSE_WRITE for one file per directory per batch, not each (${closed.length})`);
  }
});
