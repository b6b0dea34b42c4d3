// The fault tier: what a killed, interrupted, racing or starved rum leaves behind, against a real
// guest. One VM through every fault, in order; each fault is driven by rum's own progress lines
// (never by sleeping), and after each the next run must converge: exactly one domain, no temp
// files, a clean --dry-run, and the file written in the guest still there.
import assert from 'node:assert/strict';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { execa } from 'execa';
import { DOMAIN_PREFIX, RUN_DIR, bootSkipReason, repoRoot, tail, virsh } from './env.js';
import { e2eProject, type E2eProject } from './rum.js';
import { tally } from '../helpers/tally.js';

const noTrace = (s: string) => assert.doesNotMatch(s, /rum hit a bug|\n\s+at .*\.js:\d+/, `a stack trace:\n${s}`);

async function tempFiles(dirs: string[]): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else if (/\.tmp-\d+-\d+$/.test(e.name)) found.push(join(d, e.name));
    }
  };
  for (const d of dirs) await walk(d);
  return found;
}

/** The run converged: `up` exits 0, one domain of this name, no temp files, nothing left to do. */
async function converged(p: E2eProject, name: string, what: string): Promise<void> {
  const up = await p.rum('up');
  assert.equal(up.code, 0, `${what}: rum up did not converge\n${up.stderr}\n${tail(join(p.vmDir, 'console.log'), 30)}`);
  const domains = (await virsh(['list', '--all', '--name'])).split('\n').filter((d) => d.trim() === name);
  assert.equal(domains.length, 1, `${what}: exactly one domain`);
  assert.deepEqual(await tempFiles([p.vmDir, p.cacheHome]), [], `${what}: temp files left`);
  const dry = await p.rum('up', '--dry-run');
  assert.equal(dry.code, 0, `${what}: --dry-run not clean\n${dry.stdout}${dry.stderr}`);
}

async function keeps(p: E2eProject, what: string): Promise<void> {
  const r = await p.exec('cat ~/keep');
  assert.equal(r.stdout.trim(), 'the user data', `${what}: the file written in the guest is gone (${r.stderr})`);
}

const libvirtdPid = async () => Number((await readFile(join(RUN_DIR, 'libvirtd.pid'), 'utf8')).trim());

test('faults: killed at every node, out of space mid-boot, interrupted, racing, daemon killed, damaged state', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const name = `${DOMAIN_PREFIX}faults`;
  // The VM directory on a filesystem of its own, so it can be filled.
  const p = await e2eProject(
    t,
    {
      name,
      image: { base: 'debian-12' },
      resources: { cpus: 1, memory: '1G', disk: '3G' },
      network: { mode: 'user' },
      provision: { boot: 'echo boot >> /var/lib/rum/boot-runs\n' },
    },
    { dataFs: '256m' },
  );
  let faults = 0;
  let survived = 0;
  const fault = async (what: string, body: () => Promise<void>) => {
    faults++;
    await t.test(what, async () => {
      await body();
      survived++;
    });
  };
  t.after(() => tally('fault', 'e2e faults against a real guest', faults, survived));

  // 1. SIGKILL inside the download, then right after the first node each run finishes, until a
  //    run gets as far as starting the guest (killed there too). Each run continues where the
  //    killed one stopped; independent nodes run in parallel, so kills land mid-node as well.
  await fault('SIGKILL inside the base image download', async () => {
    const up = p.rumBackground('up');
    await up.waitFor(/base-image: (download|build|fetch)/i, 300_000);
    assert.equal((await up.stop('SIGKILL')).code, 137);
  });
  const killedAfter: string[] = [];
  for (let i = 0; i < 12 && !killedAfter.includes('running-domain'); i++) {
    await fault(`SIGKILL at a node boundary (${i + 1})`, async () => {
      const up = p.rumBackground('up');
      const m = await up.waitFor(/✓ (\S+) \d+ ms|• (running-domain): start/, 300_000).catch(async (err) => {
        await up.stop('SIGKILL');
        throw err;
      });
      killedAfter.push(m[1] ?? m[2]!);
      assert.equal((await up.stop('SIGKILL')).code, 137);
    });
  }
  t.diagnostic(`killed after: ${killedAfter.join(', ')}`);
  assert.ok(killedAfter.includes('running-domain'), 'the kills reached the start of the guest');

  // 2. Out of space while the guest boots: QEMU pauses it; rum says so cleanly (or runs out of
  //    room itself first), and once there is room, resumes it.
  await fault('the VM directory fills while the guest boots, then room is made', async () => {
    const { stdout } = await execa('df', ['--output=avail', '-B1', p.dataHome]);
    const filler = join(p.dataHome, 'filler');
    await execa('fallocate', ['-l', String(Number(stdout.split('\n')[1]) - 2 * 1024 * 1024), filler]);
    const up = await p.rum('up');
    noTrace(up.stderr);
    assert.notEqual(up.code, 0, 'the boot cannot finish in 2 MiB');
    assert.match(up.stderr, /paused.*I\/O error|out of space on /, up.stderr);
    assert.match(up.stderr, /hint: .*(make room|df -h)/);
    const paused = (await virsh(['domstate', name])).trim() === 'paused';
    await rm(filler);
    const again = await p.rum('up');
    assert.equal(again.code, 0, again.stderr);
    if (paused) assert.match(again.stderr, /resuming the guest: libvirt paused it \(I\/O error\)/);
    await converged(p, name, 'after the disk filled');
  });
  // The user's data, which every fault from here on must leave in place.
  assert.equal((await p.rum('up')).code, 0);
  assert.equal((await p.exec('echo "the user data" > ~/keep && sync')).code, 0);

  // 3. Interrupted and raced while it waits for SSH on a fresh boot.
  await fault('SIGKILL during the SSH wait', async () => {
    assert.equal((await p.rum('down')).code, 0);
    const up = p.rumBackground('up');
    await up.waitFor(/ssh-ready: waiting/, 300_000);
    assert.equal((await up.stop('SIGKILL')).code, 137);
    await converged(p, name, 'after SIGKILL in the SSH wait');
    await keeps(p, 'after SIGKILL in the SSH wait');
  });

  await fault('two commands on one VM: up holds it; up, down and destroy with --no-wait exit 3; down waits its turn', async () => {
    assert.equal((await p.rum('down')).code, 0);
    const up = p.rumBackground('up');
    await up.waitFor(/ssh-ready: waiting/, 300_000);
    for (const args of [['up'], ['down'], ['destroy', '-y']]) {
      const r = await p.rum(...args, '--no-wait');
      assert.equal(r.code, 3, `${args[0]} --no-wait: ${r.stderr}`);
      assert.match(r.stderr, /rum \(pid \d+/);
    }
    const down = p.rumBackground('down');
    await down.waitFor(/waiting for rum \(pid \d+\)/);
    const upDone = await up.done();
    assert.equal(upDone.code, 0, upDone.stderr);
    assert.match(upDone.stderr, /✓ ssh-ready/, 'up finished its work before down began');
    const downDone = await down.done();
    assert.equal(downDone.code, 0, downDone.stderr);
    assert.equal((await virsh(['domstate', name])).trim(), 'shut off');
  });

  await fault('SIGINT during the SSH wait: exit 130, then up converges', async () => {
    const up = p.rumBackground('up');
    await up.waitFor(/ssh-ready: waiting/, 300_000);
    const r = await up.stop('SIGINT');
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /interrupted/);
    noTrace(r.stderr);
    await converged(p, name, 'after SIGINT');
    await keeps(p, 'after SIGINT');
  });

  await fault('libvirtd killed while up waits: exit 4 with a hint; up converges once it is back', async () => {
    assert.equal((await p.rum('down')).code, 0);
    const up = p.rumBackground('up');
    await up.waitFor(/ssh-ready: waiting/, 300_000);
    process.kill(await libvirtdPid(), 'SIGKILL'); // the test environment started it: its recorded PID
    try {
      const r = await up.done();
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, /hint: /);
      noTrace(r.stderr);
      for (const args of [['status'], ['up', '--dry-run']]) {
        const s = await p.rum(...args);
        assert.equal(s.code, 4, `${args.join(' ')} with libvirtd down: ${s.stdout}${s.stderr}`);
      }
    } finally {
      await execa(join(repoRoot, 'test/e2e/env.sh'), ['libvirtd']);
    }
    await converged(p, name, 'after libvirtd came back');
    await keeps(p, 'after libvirtd came back');
  });

  // 4. A damaged state record: never a crash, and the disk (with the user's file) is kept.
  const state = join(p.vmDir, 'state.json');
  for (const [label, text] of [
    ['garbage', '\x1b[31m\x00not json at all'],
    ['the wrong shape', JSON.stringify({ version: 1, generation: 'x', nodes: null })],
    ['node records of the wrong types', JSON.stringify({ version: 1, generation: 1, nodes: { overlay: { key: 5, fields: [], output: null } } })],
  ] as const) {
    await fault(`a state record holding ${label}`, async () => {
      await writeFile(state, text);
      const s = await p.rum('status');
      noTrace(s.stderr);
      assert.doesNotMatch(s.stderr + s.stdout, /\x1b\[31m|\x00/, 'untrusted bytes never printed raw');
      await converged(p, name, `state: ${label}`);
      await keeps(p, `state: ${label}`);
    });
  }
  await fault('no state record, the disk present', async () => {
    await rm(state);
    await converged(p, name, 'no state record');
    await keeps(p, 'no state record');
  });

  // 5. A changed script keeps the disk; a vanished disk is refused, never replaced silently.
  await fault('a changed boot script: the overlay and its data are kept', async () => {
    await p.editConfig((c) => (c.provision.boot = 'echo changed >> /var/lib/rum/boot-runs\n'));
    const up = await p.rum('up');
    assert.equal(up.code, 0, up.stderr);
    await keeps(p, 'a changed script');
  });
  await fault('the disk deleted behind rum: refused with the way on', async () => {
    assert.equal((await p.rum('down')).code, 0);
    await rm(join(p.vmDir, 'disk.qcow2'));
    const up = await p.rum('up');
    assert.equal(up.code, 7, up.stderr);
    assert.match(up.stderr, /the VM's disk .* is gone/);
    assert.match(up.stderr, /rum up --reset/);
    noTrace(up.stderr);
  });
});

test('faults: a domain of the same name that rum did not make is reported and never touched', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const name = `${DOMAIN_PREFIX}foreign`;
  const p = await e2eProject(t, { name, image: { base: 'debian-12' }, network: { mode: 'user' } });
  const xml = join(p.dir, 'foreign.xml');
  await writeFile(xml, `<domain type='qemu'><name>${name}</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>`);
  await virsh(['define', xml]);
  t.after(() => virsh(['undefine', name]).catch(() => undefined));
  const uuid = (await virsh(['domuuid', name])).trim();
  let held = 0;
  const status = await p.rum('status');
  noTrace(status.stderr);
  assert.match(status.stdout + status.stderr, /not rum's|not made by rum|another/i, `status: ${status.stdout}${status.stderr}`);
  assert.doesNotMatch(status.stdout, /not created yet/);
  held++;
  for (const args of [['up'], ['down'], ['destroy', '-y']]) {
    const r = await p.rum(...args);
    noTrace(r.stderr);
    assert.notEqual(r.code, 0, `${args[0]} must refuse a domain it did not make`);
    assert.equal((await virsh(['domuuid', name])).trim(), uuid, `${args[0]} touched the foreign domain`);
    held++;
  }
  tally('fault', 'a foreign domain of the same name', 4, held);
});
