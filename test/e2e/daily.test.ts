// Living with the VM, against a real guest: status before/while/after, down and up again (only
// the running domain rebuilt, data kept), ssh-config used by real ssh and scp, logs, the serial
// console, provision, and a port forward reaching a server in the guest.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DOMAIN_PREFIX, bootSkipReason, freePortInNs, inNs, tail } from './env.js';
import { builtIds, e2eProject, httpGetInNs } from './rum.js';

test('daily commands: status, down/up, ssh-config with ssh and scp, logs, provision, a port forward (user networking)', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const name = `${DOMAIN_PREFIX}daily`;
  const hostPort = await freePortInNs();
  const p = await e2eProject(t, {
    name,
    image: { base: 'debian-12' },
    resources: { cpus: 1, memory: '1G', disk: '3G' },
    network: { mode: 'user' },
    ports: [{ host: hostPort, guest: 8000 }],
    provision: { boot: 'echo boot-script-ran\n' },
  });

  const before = await p.rumJson('status');
  assert.equal(before.state, 'absent');
  assert.equal(before.ssh, null);

  const up = await p.rumJson('up');
  assert.equal(up.ok, true, `${JSON.stringify(up.failure)}\n${tail(join(p.vmDir, 'console.log'))}`);

  const running = await p.rumJson('status');
  assert.equal(running.state, 'running');
  assert.equal(running.ssh.host, '127.0.0.1');
  assert.equal(typeof running.uptimeSeconds, 'number');
  assert.equal(running.definitionCurrent, true);
  assert.deepEqual(running.nodes.filter((n: any) => n.state !== 'fresh'), []);
  assert.deepEqual(running.ports, [{ host: hostPort, guest: 8000, bind: '127.0.0.1', proto: 'tcp' }]);

  // Commands share one login, as with OpenSSH's ControlMaster: the guest sees one client port.
  const sshClient = async (): Promise<string> => (await p.exec('echo $SSH_CLIENT')).stdout.trim();
  const first = await sshClient();
  assert.match(first, /^\S+ \d+ 22$/);
  assert.equal(await sshClient(), first);
  assert.ok(existsSync(join(p.vmDir, 'ssh.sock')));

  // Ctrl-C on `rum exec` ends the guest command's whole process group, not only rum: a quiet
  // pipeline would otherwise run on in the guest (closing the channel signals nothing).
  const inGuest = async (): Promise<boolean> => (await p.exec('pgrep -f "sleep 424[2]" >/dev/null')).code === 0;
  const long = p.rumBackground('exec', '--', 'sh', '-c', 'sleep 4242 | cat');
  for (let i = 0; i < 30 && !(await inGuest()); i++) await sleep(500);
  assert.ok(await inGuest(), 'the guest command started');
  assert.equal((await long.stop()).code, 130, 'exit status as a shell reports SIGINT');
  for (let i = 0; i < 20 && (await inGuest()); i++) await sleep(250);
  assert.equal(await inGuest(), false, 'the guest command ended with rum exec');

  // ssh-config: accepted by ssh -G, then used by the real ssh and scp (inside the namespace).
  const cfg = await p.rum('ssh-config');
  assert.equal(cfg.code, 0, cfg.stderr);
  assert.doesNotMatch(cfg.stdout, /StrictHostKeyChecking\s+no/i);
  const cfgFile = join(p.dir, 'ssh_config');
  await writeFile(cfgFile, cfg.stdout);
  const g = String((await inNs('ssh', ['-G', '-F', cfgFile, `rum-${name}`])).stdout);
  assert.match(g, /^hostname 127\.0\.0\.1$/m);
  assert.match(g, new RegExp(`^port ${running.ssh.port}$`, 'm'));
  assert.match(g, /^stricthostkeychecking true$/m);
  assert.equal(String((await inNs('ssh', ['-F', cfgFile, `rum-${name}`, 'echo', 'via-openssh'])).stdout).trim(), 'via-openssh');
  await writeFile(join(p.dir, 'hello.txt'), 'hello from scp\n');
  await inNs('scp', ['-F', cfgFile, join(p.dir, 'hello.txt'), `rum-${name}:/tmp/hello.txt`]);
  assert.equal((await p.exec('cat /tmp/hello.txt')).stdout, 'hello from scp\n');

  // Logs: cloud-init's final message; the kernel's boot lines on the serial console.
  const logs = await p.rum('logs');
  assert.equal(logs.code, 0, logs.stderr);
  assert.match(logs.stdout, /Cloud-init v\. .* finished at/);
  const con = await p.rum('logs', '--console');
  assert.match(con.stdout, /Linux version \d/);
  const prov = await p.rum('logs', '--provision');
  assert.match(prov.stdout, /== boot \(exit 0\)/);
  assert.match(prov.stdout, /boot-script-ran/);

  // A port forward (QEMU user networking) reaches a server started in the guest.
  await p.exec('mkdir -p /tmp/www && echo served-by-guest > /tmp/www/index.html && (cd /tmp/www && nohup python3 -m http.server 8000 >/dev/null 2>&1 &)');
  assert.equal((await httpGetInNs(`http://127.0.0.1:${hostPort}/index.html`)).trim(), 'served-by-guest');

  // provision reruns the boot script as rum.yaml has it now.
  await p.editConfig((c) => (c.provision.boot = 'echo boot-script-v2\n'));
  const again = await p.rum('provision', '--boot');
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /boot-script-v2/);

  // down, then up: only the running domain (and SSH readiness) is rebuilt; the data is there.
  assert.equal((await p.exec('echo persisted > ~/data && sync')).code, 0);
  const down = await p.rum('down');
  assert.equal(down.code, 0, down.stderr);
  assert.equal((await p.rumJson('status')).state, 'shut off');
  // The shared login ended with the guest; nothing serves its socket any more.
  for (let i = 0; i < 50 && existsSync(join(p.vmDir, 'ssh.sock')); i++) await sleep(100);
  assert.equal(existsSync(join(p.vmDir, 'ssh.sock')), false);
  assert.equal((await p.rum('down')).code, 0, 'down is idempotent');
  await p.editConfig((c) => (c.provision.boot = 'echo boot-script-ran\n')); // user-data back as it was
  const back = await p.rumJson('up');
  assert.equal(back.ok, true, JSON.stringify(back.failure));
  assert.deepEqual(builtIds(back), ['running-domain', 'ssh-ready']);
  assert.equal((await p.exec('cat ~/data')).stdout.trim(), 'persisted');
  assert.notEqual(await sshClient(), first, 'a new login after the reboot');
});
