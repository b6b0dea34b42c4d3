// VM figures for make bench, in the sandboxed environment: a no-op `rum up` on a running VM,
// and a cold `up` (image cached) to SSH-ready beside the guest's own boot-to-sshd time.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { ioBench } from './io.js';
import { machinesBench } from './machines.js';
import { suspendBench } from './suspend.js';
import { warmBench } from './warm.js';
import { layerBench } from './layer.js';

type Add = (what: string, rum: string, baseline: string, target: string) => void;
interface Tools {
  median(xs: number[]): number;
  time(cmd: string[], opts?: { runs?: number; warmup?: number; cwd?: string; env?: NodeJS.ProcessEnv }): number;
  nodeBaseline(): string;
}

const root = fileURLToPath(new URL('../../', import.meta.url));
const rum = join(root, 'bin/rum');
const inNs = join(root, 'test/e2e/rum-in-ns');
const ms = (x: number) => `${x.toFixed(1)} ms`;

export async function vmBench(add: Add, { median, time, nodeBaseline }: Tools): Promise<void> {
  console.error('rum bench: VM figures (sandboxed libvirtd)');
  const mirror = execFileSync(join(root, 'test/e2e/image-mirror.sh'), ['start'], { encoding: 'utf8' }).trim();
  const work = mkdtempSync(join(tmpdir(), 'rum-bench-vm-'));
  execFileSync('chmod', ['755', work]);
  const proj = join(work, 'proj');
  mkdirSync(proj);
  const name = 'rumtest-bench';
  writeFileSync(join(proj, 'rum.yaml'), stringify({ name, image: { base: 'debian-12' }, resources: { cpus: 2, memory: '1G', disk: '3G' }, network: { mode: 'user' } }));
  const envArgs = [`XDG_DATA_HOME=${join(work, 'data')}`, `XDG_CACHE_HOME=${join(work, 'cache')}`, `RUM_IMAGE_MIRROR=${mirror}`, 'NO_COLOR=1'];
  const rumCmd = (...args: string[]) => [inNs, 'env', ...envArgs, rum, ...args];
  const run = (...args: string[]) => execFileSync(rumCmd(...args)[0]!, rumCmd(...args).slice(1), { cwd: proj, stdio: 'ignore' });
  try {
    // Image fetched once (not part of the cold figure: "image cached").
    run('build', 'base-image');
    // The guest's own boot, as the issue defines it: from QEMU's start (virtlogd creates the
    // console log as QEMU starts) to the console's "Started ssh.service", both seen by polling
    // the log every 20 ms while `rum up` runs.
    const colds: number[] = [];
    const guests: number[] = [];
    const kernels: number[] = [];
    const logins: number[] = [];
    const consoleLog = join(work, 'data', 'rum', name, 'console.log');
    for (let i = 0; i < 3; i++) {
      const r = await timedUp(rumCmd('up'), proj, consoleLog);
      colds.push(r.total);
      guests.push(r.sshd - r.qemu);
      logins.push(r.login);
      kernels.push(sshdListening(consoleLog));
      if (i < 2) run('destroy', '-y');
      if (i < 2) run('build', 'base-image');
    }
    const cold = median(colds) / 1000;
    const guest = median(guests) / 1000;
    const login = median(logins) / 1000;
    add('cold `rum up` (image cached) to its first SSH login', `${login.toFixed(1)} s`, `guest: QEMU start → sshd started ${guest.toFixed(1)} s (${(login / guest).toFixed(2)}x)`, '≤ 1.10x');
    add(
      'cold `rum up` (image cached, no provisioning) until it returns, SSH-ready',
      `${cold.toFixed(1)} s`,
      `guest: QEMU start → sshd started ${guest.toFixed(1)} s (${(cold / guest).toFixed(2)}x); kernel → sshd ${median(kernels).toFixed(1)} s`,
      '≤ 1.10x',
    );

    // `up` returns at the first login when nothing is provisioned; cloud-init's last stages still
    // run then. The figures below are for a running VM at rest.
    run('exec', '--', 'cloud-init', 'status', '--wait');
    const noop = time(rumCmd('up'), { cwd: proj, runs: 15 });
    const virshList = time(['virsh', '-c', 'qemu:///system', 'list'], { runs: 15 });
    // rum runs inside the test namespace (its port check reads that namespace's /proc/net/tcp);
    // the wrapper that puts it there is timed too, since a user's rum has none.
    const wrapper = time([inNs, 'env', ...envArgs, 'true'], { runs: 15 });
    const base = `virsh list: ${ms(virshList)}, ${nodeBaseline()}, namespace wrapper: ${ms(wrapper)}`;
    add('no-op `rum up` on a running VM', ms(noop), base, '≤ 150 ms');
    const graph = time(rumCmd('graph'), { cwd: proj, runs: 15 });
    const dry = time(rumCmd('up', '--dry-run'), { cwd: proj, runs: 15 });
    add('`rum graph` on a running VM', ms(graph), base, '≤ 120 ms');
    add('`rum up --dry-run` on a running VM', ms(dry), base, '≤ 120 ms');
    const status = time(rumCmd('status'), { cwd: proj, runs: 15 });
    add('`rum status` on a running VM', ms(status), base, '≤ 120 ms');
    const list = time(rumCmd('list'), { cwd: proj, runs: 15 });
    add('`rum list` with that VM running', ms(list), `\`rum status\`: ${ms(status)}, ${base}`, '≤ `rum status`');

    // The first (unmeasured) run starts the shared login; the rest use it.
    const exec = time(rumCmd('exec', '--', 'true'), { cwd: proj, runs: 10 });
    const unshared = time([inNs, 'env', 'RUM_SSH_SHARE=0', ...rumCmd('exec', '--', 'true').slice(2)], { cwd: proj, runs: 10 });
    const port = JSON.parse(readFileSync(join(work, 'data', 'rum', name, 'state.json'), 'utf8')).nodes['ssh-ready'].data.port;
    const key = join(work, 'data', 'rum', name, 'id_ed25519');
    const known = join(work, 'data', 'rum', name, 'known_hosts');
    const plain = time([inNs, 'ssh', '-i', key, '-o', `UserKnownHostsFile=${known}`, '-o', `HostKeyAlias=rum-${name}`, '-o', 'StrictHostKeyChecking=yes', '-p', String(port), 'rum@127.0.0.1', 'true'], { runs: 10 });
    add('`rum exec -- true` on a ready VM (shared login)', ms(exec), `plain ssh, same key: ${ms(plain)}`, '≤ plain ssh');
    add('`rum exec -- true`, RUM_SSH_SHARE=0 (own login)', ms(unshared), `plain ssh, same key: ${ms(plain)}`, '');
  } finally {
    try {
      run('destroy', '-y');
    } catch {
      /* reported by the run that failed */
    }
    rmSync(work, { recursive: true, force: true });
  }
  await ioBench(add, mirror, median);
  await suspendBench(add, mirror, median);
  await warmBench(add, mirror, median);
  await layerBench(add, mirror, median);
  await machinesBench(add, mirror, { median, time });
}

const SSHD_STARTED = /Started (?:\x1b\[[0-9;]*m)?ssh\.service/;

/** Runs `rum up`, noting (ms from its start) when QEMU started and when the guest's sshd did. */
async function timedUp(argv: string[], cwd: string, consoleLog: string): Promise<{ total: number; qemu: number; sshd: number; login: number }> {
  const t0 = performance.now();
  let qemu = NaN;
  let sshd = NaN;
  const poll = setInterval(() => {
    if (!Number.isNaN(sshd)) return;
    const text = existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : undefined;
    if (text === undefined) return;
    if (Number.isNaN(qemu)) qemu = performance.now() - t0;
    if (SSHD_STARTED.test(text)) sshd = performance.now() - t0;
  }, 20);
  // rum says "waiting for cloud-init" once its SSH login worked: the time a plain login would take.
  let login = NaN;
  const child = spawn(argv[0]!, argv.slice(1), { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', (c: Buffer) => {
    if (Number.isNaN(login) && /waiting for cloud-init|checking cloud-init/.test(c.toString())) login = performance.now() - t0;
  });
  const code = await new Promise<number | null>((r) => child.once('close', r));
  clearInterval(poll);
  if (code !== 0) throw new Error(`rum up exited ${code}`);
  if (Number.isNaN(qemu) || Number.isNaN(sshd)) throw new Error(`no QEMU start or sshd start seen in ${consoleLog}`);
  return { total: performance.now() - t0, qemu, sshd, login };
}

/** Seconds from the guest kernel's start to sshd listening, from the serial console's timestamps. */
function sshdListening(consoleLog: string): number {
  const text = readFileSync(consoleLog, 'utf8').replace(/\x1b\[[0-9;]*m/g, '');
  // The last boot in the log; systemd prints no timestamps, so use the kernel's [ seconds ] of the
  // nearest line after "Started ssh.service".
  const i = text.lastIndexOf('Started ssh.service');
  const after = /\[\s*(\d+\.\d+)\]/.exec(text.slice(i));
  const before = [...text.slice(0, i).matchAll(/\[\s*(\d+\.\d+)\]/g)].pop();
  const t = Number((after ?? before)?.[1]);
  if (!Number.isFinite(t)) throw new Error(`no sshd start in ${consoleLog}`);
  return t;
}
