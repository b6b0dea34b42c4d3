// Shared folders against a real guest (qemu:///system): virtiofs (auto), 9p (forced) and a
// read-only share (auto picks 9p to enforce it on the host); both directions, in fstab with
// nofail. Session mode's 9p is covered by the session test in up.test.ts.
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DOMAIN_PREFIX, bootSkipReason, repoUrl, tail } from './env.js';
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
  });
  for (const d of ['vfs', 'p9', 'ro']) {
    await mkdir(join(p.dir, d));
    await chmod(join(p.dir, d), 0o777); // rum runs as root here: let the guest's user write
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
    await settle();
    const host = (f: string) => join(p.dir, 'vfs', f);
    await writeFile(host('created.txt'), 'one\n');
    await settle();
    await writeFile(host('created.txt'), 'two\n'); // one edit
    await settle();
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
});
