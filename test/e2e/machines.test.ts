// Several machines in one rum.yaml, for real: db and web on the project's own libvirt network,
// web after db, web reaching db by name; a change to one machine plans only its nodes; destroying
// one leaves the other running. And a VM made by the previous release works unchanged.
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { execa } from 'execa';
import { DOMAIN_PREFIX, RUN_DIR, bootSkipReason, repoRoot, tail, virsh } from './env.js';
import { e2eProject } from './rum.js';

const exists = (p: string) => access(p).then(() => true, () => false);

test('machines: db and web on their own network, web after db and reaching it by name, one destroyed alone', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const name = `${DOMAIN_PREFIX}shop`;
  const p = await e2eProject(t, {
    name,
    image: { base: 'debian-12' },
    resources: { cpus: 1, memory: '512M', disk: '3G' },
    network: { mode: 'nat' },
    machines: {
      db: {},
      web: { after: ['db'] },
    },
  });
  const data = join(p.dataHome, 'rum');

  // One plan over both machines; the base image once.
  const plan = await p.rumJson('up', '--dry-run');
  const ids: string[] = plan.nodes.map((n: { id: string }) => n.id);
  assert.equal(ids.filter((id) => id.endsWith('base-image')).length, 1, ids.join(' '));
  assert.ok(ids.includes('db/overlay') && ids.includes('web/overlay') && ids.includes('project-network'), ids.join(' '));

  const up = await p.rum('up');
  assert.equal(up.code, 0, `${up.stderr}\n${tail(join(data, `${name}-db`, 'console.log'))}\n${tail(join(data, `${name}-web`, 'console.log'))}`);
  // after: [db]: web is started only once db answers over SSH.
  const at = (re: RegExp) => up.stderr.search(re);
  assert.ok(at(/✓ db\/ssh-ready/) >= 0 && at(/• web\/running-domain: start/) > at(/✓ db\/ssh-ready/), up.stderr);

  const status = await p.rumJson('status');
  assert.deepEqual(status.machines.map((m: { machine: string; state: string }) => [m.machine, m.state]), [['db', 'running'], ['web', 'running']]);
  const net = await virsh(['net-info', `rum-${name}`]);
  assert.match(net, /Active:\s+yes/);

  // web resolves db by its short name and reaches a server there.
  const dbAddr = status.machines[0].ssh.host as string;
  const serve = await p.rum('exec', 'db', '--', 'sh', '-c', 'mkdir -p /tmp/w && echo from-db > /tmp/w/hello && cd /tmp/w && (nohup python3 -m http.server 8000 >/dev/null 2>&1 &)');
  assert.equal(serve.code, 0, serve.stderr);
  // By the network's DNS (dnsmasq), as db and as db.<project>.rum.internal: the short name is
  // qualified with the search domain rum sets (the canonical name says so; not LLMNR).
  for (const host of ['db', `db.${name}.rum.internal`]) {
    const resolved = await p.rum('exec', 'web', '--', 'getent', 'ahostsv4', host);
    assert.equal(resolved.code, 0, resolved.stderr);
    const first = resolved.stdout.trim().split('\n')[0]!.split(/\s+/);
    assert.deepEqual([first[0], first[2]], [dbAddr, `db.${name}.rum.internal`], `${host}: ${resolved.stdout}`);
  }
  const fetch = `import time, urllib.request
for i in range(40):
    try:
        print(urllib.request.urlopen('http://db:8000/hello', timeout=3).read().decode().strip()); break
    except Exception as e:
        time.sleep(0.5)
else:
    raise SystemExit(1)`;
  const got = await p.rum('exec', 'web', '--', 'python3', '-c', fetch);
  assert.equal(got.stdout.trim(), 'from-db', got.stderr);

  // A command for one machine, given none, names the choices.
  const which = await p.rum('exec', '--', 'true');
  assert.equal(which.code, 2, which.stderr);
  assert.match(which.stderr, /machines: db, web/);

  // Only web's cpus change: only web's nodes are stale.
  await p.editConfig((c) => {
    c.machines.web.resources = { cpus: 2 };
  });
  const dry = await p.rumJson('up', '--dry-run');
  const changed: string[] = dry.nodes.filter((n: { action: string }) => n.action !== 'none').map((n: { id: string }) => n.id);
  assert.ok(changed.length > 0 && changed.every((id) => id.startsWith('web/')), changed.join(' '));
  assert.ok(changed.includes('web/domain-xml'), changed.join(' '));

  // Destroying web leaves db running and reachable, the network and the shared image.
  const gone = await p.rum('destroy', 'web', '-y');
  assert.equal(gone.code, 0, gone.stderr);
  assert.equal(await exists(join(data, `${name}-web`)), false);
  assert.equal(await exists(join(data, `${name}-db`, 'disk.qcow2')), true);
  const after = await p.rumJson('status');
  assert.deepEqual(after.machines.map((m: { machine: string; state: string }) => [m.machine, m.state]), [['db', 'running'], ['web', 'absent']]);
  const alive = await p.rum('exec', 'db', '--', 'cat', '/tmp/w/hello');
  assert.equal(alive.stdout.trim(), 'from-db', alive.stderr);
  assert.match(await virsh(['net-info', `rum-${name}`]), /Active:\s+yes/);

  // Destroying the rest removes the project's network too.
  assert.equal((await p.rum('destroy', '-y')).code, 0);
  assert.equal((await virsh(['net-list', '--all', '--name'])).split('\n').includes(`rum-${name}`), false);
});

test('machines: a VM made by the previous release is fresh, reachable and upgraded in place', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  // The release before machines, as users have it installed (fixtures/previous-release).
  const prefix = join(RUN_DIR, 'prev-prefix');
  await execa('rm', ['-rf', prefix]);
  await execa('npm', ['install', '--global', '--prefix', prefix, '--no-audit', '--no-fund', '--silent', join(repoRoot, 'fixtures/previous-release/rum-884aa6e.tgz')]);
  t.after(() => execa('rm', ['-rf', prefix]));
  const old = join(prefix, 'bin/rum');
  const name = `${DOMAIN_PREFIX}legacy`;
  const p = await e2eProject(t, {
    name,
    image: { base: 'debian-12' },
    resources: { cpus: 1, memory: '512M', disk: '3G' },
    network: { mode: 'user' },
  });
  const made = await p.rumWith(old, 'up');
  assert.equal(made.code, 0, `${made.stderr}\n${tail(join(p.vmDir, 'console.log'))}`);
  assert.equal((await p.exec('echo kept > ~/note')).code, 0);

  // This release: the same directory and state, the guest and its data there. It sets guests up
  // differently at boot (warm boots: user-data's recipe), so their seed is made again, and
  // nothing else: the disk is kept and the running guest is not restarted.
  const dry = await p.rumJson('up', '--dry-run');
  const stale = dry.nodes.filter((n: { state: string }) => n.state !== 'fresh');
  assert.deepEqual(stale.map((n: { id: string; action: string }) => [n.id, n.action]), [['user-data', 'rebuild'], ['seed-iso', 'rebuild']], JSON.stringify(stale));
  assert.equal(stale[0].reason.type, 'recipe-changed');
  const status = await p.rumJson('status');
  assert.equal(status.state, 'running');
  assert.equal(status.vm, name);
  assert.equal((await p.exec('cat ~/note')).stdout.trim(), 'kept');
  const upgraded = await p.rum('up');
  assert.equal(upgraded.code, 0, upgraded.stderr);
  assert.match(upgraded.stderr, /the guest takes it at its next start/);
  assert.doesNotMatch(upgraded.stderr, /running-domain|overlay/, 'neither the disk nor the guest is touched');
  const again = await p.rum('up');
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /up to date/);
  assert.equal((await p.exec('cat ~/note')).stdout.trim(), 'kept');
});
