// Warm boots against a real guest: after `down` and `up` cloud-init is skipped (the guest says
// so), the boot script ran again on this boot and the 9p share is mounted; a rum.yaml change
// that changes the seed makes the next boot run cloud-init again, and the one after is warm again
// with what that change brought (a new share, from fstab).
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DOMAIN_PREFIX, bootSkipReason, tail } from './env.js';
import { builtIds, e2eProject, type E2eProject } from './rum.js';

/** What the guest says about the boot it is in. */
async function bootFacts(p: E2eProject) {
  const sh = async (cmd: string) => (await p.exec(cmd)).stdout.trim();
  return {
    bootId: await sh('cat /proc/sys/kernel/random/boot_id'),
    // Absent on a first boot: the generator that writes it is installed during that boot.
    kind: await sh('cat /run/rum/boot-kind 2>/dev/null; true'),
    status: await sh('cloud-init status'),
    // Each of cloud-init's four stages: whether systemd started it in this boot.
    stages: await sh('systemctl show -p ActiveEnterTimestampMonotonic --value cloud-init-local.service cloud-init.service cloud-config.service cloud-final.service'),
    journal: await sh('sudo -n journalctl -b -q -o cat -u cloud-init-local.service -u cloud-init.service -u cloud-final.service | grep -c . || true'),
    bootLog: await sh('cat /var/log/rum/boot.log'),
    mounts: await sh('findmnt -rn -t 9p -o TARGET | sort'),
  };
}

test('warm boots: down and up skips cloud-init, runs the boot script, mounts the share; a changed seed runs cloud-init once more', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const p = await e2eProject(t, {
    name: `${DOMAIN_PREFIX}warm`,
    image: { base: 'debian-12' },
    resources: { cpus: 1, memory: '1G', disk: '3G' },
    network: { mode: 'user' },
    mounts: [{ source: './share', target: '/mnt/share', type: '9p', readonly: true }],
    provision: { boot: 'echo boot-script-ran-in $(cat /proc/sys/kernel/random/boot_id)\n' },
  });
  for (const d of ['share', 'extra']) {
    await mkdir(join(p.dir, d));
    await writeFile(join(p.dir, d, 'from-host.txt'), `host-${d}\n`);
  }
  const up = async () => {
    const r = await p.rumJson('up');
    assert.equal(r.ok, true, `${JSON.stringify(r.failure)}\n${tail(join(p.vmDir, 'console.log'))}`);
    return r;
  };
  const downUp = async () => {
    // The first boot's last stage records the seed it ran with: a day's work lets it finish.
    assert.equal((await p.exec('cloud-init status --wait >/dev/null; true')).code, 0);
    assert.equal((await p.rum('down')).code, 0);
    return up();
  };

  await up();
  const cold = await bootFacts(p);
  assert.equal(cold.kind, '', 'a first boot is cloud-init\'s, before any of rum\'s warm-boot pieces exist');
  assert.ok(cold.stages.split(/\n+/).every((s) => s !== '0'), cold.stages);
  assert.match(cold.bootLog, new RegExp(`boot-script-ran-in ${cold.bootId}`));

  const back = await downUp();
  assert.deepEqual(builtIds(back), ['running-domain', 'ssh-ready']);
  const warm = await bootFacts(p);
  assert.notEqual(warm.bootId, cold.bootId);
  assert.equal(warm.kind, 'warm');
  assert.match(warm.status, /status: disabled/, 'cloud-init says it did not run');
  assert.deepEqual(warm.stages.split(/\n+/), ['0', '0', '0', '0'], 'no cloud-init stage started in this boot');
  assert.equal(warm.journal, '0', 'nothing from cloud-init in this boot\'s journal');
  assert.match(warm.bootLog, new RegExp(`boot-script-ran-in ${warm.bootId}`), 'the boot script ran in this boot');
  assert.match((await p.rum('logs', '--provision')).stdout, /== boot \(exit 0\)[\s\S]*boot-script-ran-in/);
  assert.equal(warm.mounts, '/mnt/share');
  assert.equal((await p.exec('cat /mnt/share/from-host.txt')).stdout, 'host-share\n');

  // A change of rum.yaml that changes the seed (here a second share): cloud-init runs again.
  assert.equal((await p.rum('down')).code, 0);
  await p.editConfig((c) => c.mounts.push({ source: './extra', target: '/mnt/extra', type: '9p', readonly: true }));
  const changed = await up();
  assert.ok(changed.built.includes('seed-iso'), JSON.stringify(changed.built));
  const again = await bootFacts(p);
  assert.equal(again.kind, 'cloud-init', 'a changed seed is not a warm boot');
  assert.match(again.status, /status: (done|running)/);
  assert.equal(again.mounts, '/mnt/extra\n/mnt/share');
  assert.match(again.bootLog, new RegExp(`boot-script-ran-in ${again.bootId}`));

  // ...and the boot after it is warm, with the new share carried by fstab.
  await downUp();
  const warmAgain = await bootFacts(p);
  assert.equal(warmAgain.kind, 'warm');
  assert.match(warmAgain.status, /status: disabled/);
  assert.equal(warmAgain.mounts, '/mnt/extra\n/mnt/share');
  assert.equal((await p.exec('cat /mnt/extra/from-host.txt')).stdout, 'host-extra\n');
  assert.match(warmAgain.bootLog, new RegExp(`boot-script-ran-in ${warmAgain.bootId}`));
});
