// Machines figures for make bench, in the sandboxed environment: a cold `up` of a 2-machine
// project (nat, its own network) beside two single-machine ups one after the other, and
// `up --dry-run` on the running pair beside the same on a running single VM.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

type Add = (what: string, rum: string, baseline: string, target: string) => void;
interface Tools {
  median(xs: number[]): number;
  time(cmd: string[], opts?: { runs?: number; warmup?: number; cwd?: string; env?: NodeJS.ProcessEnv }): number;
}

const root = fileURLToPath(new URL('../../', import.meta.url));
const rum = join(root, 'bin/rum');
const inNs = join(root, 'test/e2e/rum-in-ns');
const ms = (x: number) => `${x.toFixed(1)} ms`;
const ROUNDS = 3;

export async function machinesBench(add: Add, mirror: string, { median, time }: Tools): Promise<void> {
  console.error('rum bench: machines (two 512M guests, 1 cpu each)');
  const work = mkdtempSync(join(tmpdir(), 'rum-bench-m-'));
  execFileSync('chmod', ['755', work]);
  const envArgs = [`XDG_DATA_HOME=${join(work, 'data')}`, `XDG_CACHE_HOME=${join(work, 'cache')}`, `RUM_IMAGE_MIRROR=${mirror}`, 'NO_COLOR=1'];
  const vm = { image: { base: 'debian-12' }, resources: { cpus: 1, memory: '512M', disk: '3G' }, network: { mode: 'nat' } };
  const project = (dir: string, config: object) => {
    mkdirSync(join(work, dir));
    writeFileSync(join(work, dir, 'rum.yaml'), stringify(config));
    return join(work, dir);
  };
  const pair = project('pair', { name: 'rumtest-bpair', ...vm, machines: { db: {}, web: {} } });
  const one = project('one', { name: 'rumtest-bone', ...vm });
  const two = project('two', { name: 'rumtest-btwo', ...vm });
  const cmd = (...args: string[]) => [inNs, 'env', ...envArgs, rum, ...args];
  const run = (cwd: string, ...args: string[]) => {
    const c = cmd(...args);
    const r = spawnSync(c[0]!, c.slice(1), { cwd, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`rum ${args.join(' ')} in ${cwd} exited ${r.status}: ${r.stderr.slice(-2000)}`);
  };
  const timed = (cwd: string, ...args: string[]) => {
    const t0 = performance.now();
    run(cwd, ...args);
    return performance.now() - t0;
  };
  try {
    run(one, 'build', 'base-image'); // the image cached: the shared cache serves all three
    const pairs: number[] = [];
    const singles: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      // Alternating which goes first, so a drift in the machine's speed favours neither.
      const measurePair = () => pairs.push(timed(pair, 'up'));
      const measureSingles = () => singles.push(timed(one, 'up') + timed(two, 'up'));
      if (i % 2 === 0) (measurePair(), measureSingles());
      else (measureSingles(), measurePair());
      if (i < ROUNDS - 1) for (const p of [pair, one, two]) run(p, 'destroy', '-y');
    }
    const p = median(pairs) / 1000;
    const s = median(singles) / 1000;
    add('cold `rum up` of 2 machines (nat, own network; image cached)', `${p.toFixed(1)} s`, `2 single-machine ups one after the other: ${s.toFixed(1)} s (${(p / s).toFixed(2)}x)`, 'reported');

    // At rest: both pairs' guests and the single VM running, cloud-init done.
    for (const [cwd, names] of [[pair, ['db', 'web']], [one, []]] as const)
      for (const n of names.length > 0 ? names : [undefined]) run(cwd, 'exec', ...(n ? [n] : []), '--', 'cloud-init', 'status', '--wait');
    run(two, 'down');
    const dryPair = time(cmd('up', '--dry-run'), { cwd: pair, runs: 15 });
    const dryOne = time(cmd('up', '--dry-run'), { cwd: one, runs: 15 });
    add('`rum up --dry-run` on a running 2-machine project', ms(dryPair), `the same on a running 1-machine project: ${ms(dryOne)} (${(dryPair / dryOne).toFixed(2)}x)`, '≤ 1.2x');
  } finally {
    for (const p of [pair, one, two]) {
      try {
        run(p, 'destroy', '-y');
      } catch {
        /* reported by the run that failed */
      }
    }
    rmSync(work, { recursive: true, force: true });
  }
}
