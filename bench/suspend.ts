// Suspend figures for make bench, in the sandboxed environment: `rum up` resuming a suspended
// guest beside a cold `rum up` of the same VM (image cached), and `rum suspend` itself.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

type Add = (what: string, rum: string, baseline: string, target: string) => void;

const root = fileURLToPath(new URL('../../', import.meta.url));
const rum = join(root, 'bin/rum');
const inNs = join(root, 'test/e2e/rum-in-ns');
const ROUNDS = 3;

export async function suspendBench(add: Add, mirror: string, median: (xs: number[]) => number): Promise<void> {
  console.error('rum bench: suspend and resume (one 1G guest, 2 cpus, user networking)');
  const work = mkdtempSync(join(tmpdir(), 'rum-bench-s-'));
  execFileSync('chmod', ['755', work]);
  const proj = join(work, 'proj');
  mkdirSync(proj);
  writeFileSync(join(proj, 'rum.yaml'), stringify({ name: 'rumtest-bsuspend', image: { base: 'debian-12' }, resources: { cpus: 2, memory: '1G', disk: '3G' }, network: { mode: 'user' } }));
  const envArgs = [`XDG_DATA_HOME=${join(work, 'data')}`, `XDG_CACHE_HOME=${join(work, 'cache')}`, `RUM_IMAGE_MIRROR=${mirror}`, 'NO_COLOR=1'];
  const timed = (...args: string[]) => {
    const t0 = performance.now();
    const r = spawnSync(inNs, ['env', ...envArgs, rum, ...args], { cwd: proj, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`rum ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-2000)}`);
    return performance.now() - t0;
  };
  try {
    timed('build', 'base-image');
    const colds: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      colds.push(timed('up'));
      if (i < ROUNDS - 1) timed('destroy', '-y');
    }
    timed('exec', '--', 'cloud-init', 'status', '--wait'); // at rest, as a day's work leaves it
    const saves: number[] = [];
    const resumes: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      saves.push(timed('suspend'));
      resumes.push(timed('up'));
    }
    const cold = median(colds) / 1000;
    const resume = median(resumes) / 1000;
    add('`rum up` of a suspended VM (resume)', `${resume.toFixed(1)} s`, `cold \`rum up\` of the same VM: ${cold.toFixed(1)} s (${(resume / cold).toFixed(2)}x)`, '≤ 0.1x');
    add('`rum suspend` of a running 1G guest', `${(median(saves) / 1000).toFixed(1)} s`, `cold \`rum up\`: ${cold.toFixed(1)} s`, 'reported');
  } finally {
    try {
      timed('destroy', '-y');
    } catch {
      /* reported by the run that failed */
    }
    rmSync(work, { recursive: true, force: true });
  }
}
