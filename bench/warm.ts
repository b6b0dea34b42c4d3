// Warm-boot figures for make bench, in the sandboxed environment, all of one VM in one run: a cold
// `rum up` (first boot, image cached), a warm `rum up` after `rum down` (cloud-init skipped, rum's
// own units do the every-boot work), and the floor: the same guest booting with cloud-init
// disabled outright (/etc/cloud/cloud-init.disabled, so neither cloud-init nor rum-boot.service
// runs), also `down` then `up`, to SSH-ready. No provisioning, so each `up` returns at the first
// login.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchVm, root, type Add } from './sandbox-vm.js';

const ROUNDS = 3;

/** `rum`: the binary to time (RUM_BENCH_BIN, e.g. an installed prefix's, else this checkout's). */
export async function warmBench(add: Add, mirror: string, median: (xs: number[]) => number, rum = process.env.RUM_BENCH_BIN ?? join(root, 'bin/rum')): Promise<void> {
  console.error('rum bench: warm boots (one 1G guest, 2 cpus, user networking)');
  const { timed, close } = benchVm('rumtest-bwarm', mirror, rum);
  // The first boot's last stage records the seed it ran with (src/cloudinit/warm-boot.ts): a
  // day's work lets it finish before `down`.
  const atRest = () => timed('exec', '--', 'cloud-init', 'status', '--wait');
  const downUp = (expect: string) => {
    atRest();
    timed('down');
    const ms = timed('up').ms;
    const kind = timed('exec', '--', 'sh', '-c', 'cat /run/rum/boot-kind 2>/dev/null; cloud-init status').stdout;
    if (!kind.includes(expect)) throw new Error(`expected a boot that says ${expect}, the guest says: ${kind}`);
    return ms;
  };
  try {
    timed('build', 'base-image');
    const colds: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      colds.push(timed('up').ms);
      if (i < ROUNDS - 1) timed('destroy', '-y');
    }
    const warms: number[] = [];
    for (let i = 0; i < ROUNDS; i++) warms.push(downUp('warm'));
    timed('exec', '--', 'sudo', '-n', 'touch', '/etc/cloud/cloud-init.disabled');
    const floors: number[] = [];
    for (let i = 0; i < ROUNDS; i++) floors.push(downUp('cloud-init\nstatus: disabled'));
    const [cold, warm, floor] = [colds, warms, floors].map((xs) => median(xs) / 1000) as [number, number, number];
    console.error(`rum bench: warm boots: cold ${colds.map((x) => (x / 1000).toFixed(1))} s, warm ${warms.map((x) => (x / 1000).toFixed(1))} s, floor ${floors.map((x) => (x / 1000).toFixed(1))} s`);
    add(
      '`rum up` after `rum down` (warm boot, to SSH-ready)',
      `${warm.toFixed(1)} s`,
      `cold \`rum up\` of the same VM: ${cold.toFixed(1)} s (${(warm / cold).toFixed(2)}x); cloud-init disabled: ${floor.toFixed(1)} s (${(warm / floor).toFixed(2)}x)`,
      '≤ 0.6x cold',
    );
  } finally {
    close();
  }
}

// Alone: node dist/bench/warm.js (the e2e environment running), e.g. with
// RUM_BENCH_BIN=/run/rum-test/prefix-warm/bin/rum.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const mirror = execFileSync(join(root, 'test/e2e/image-mirror.sh'), ['start'], { encoding: 'utf8' }).trim();
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  await warmBench((what, fig, base, target) => console.log(`| ${what} | ${fig} | ${base} | ${target} |`), mirror, median);
}
