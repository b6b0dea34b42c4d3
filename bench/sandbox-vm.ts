// One VM for a bench, in the sandboxed environment: a project of its own under /tmp, rum run in
// the test namespace (rum-in-ns) with the local image mirror, each command timed. Shared by the
// daily-cycle benches (suspend.ts, warm.ts).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

export type Add = (what: string, rum: string, baseline: string, target: string) => void;

export const root = fileURLToPath(new URL('../../', import.meta.url));
const inNs = join(root, 'test/e2e/rum-in-ns');

export interface BenchVm {
  work: string;
  dataHome: string;
  /** Runs rum in the project; throws on a failure, with its stderr. */
  timed(...args: string[]): { ms: number; stdout: string };
  /** Destroys the VM (a failure was reported by the run that failed) and removes the project. */
  close(): void;
}

/** A 1G 2-vCPU guest on user networking, named `name`. `rum`: the binary to time. `extra`:
 * more of rum.yaml (provisioning). `cache`: another bench VM's work directory, whose image cache
 * this one shares. */
export function benchVm(name: string, mirror: string, rum = join(root, 'bin/rum'), opts: { extra?: Record<string, unknown>; cache?: string } = {}): BenchVm {
  const work = mkdtempSync(join(tmpdir(), 'rum-bench-'));
  execFileSync('chmod', ['755', work]);
  const proj = join(work, 'proj');
  mkdirSync(proj);
  writeFileSync(join(proj, 'rum.yaml'), stringify({ name, image: { base: 'debian-12' }, resources: { cpus: 2, memory: '1G', disk: '3G' }, network: { mode: 'user' }, ...opts.extra }));
  const dataHome = join(work, 'data');
  const envArgs = [`XDG_DATA_HOME=${dataHome}`, `XDG_CACHE_HOME=${join(opts.cache ?? work, 'cache')}`, `RUM_IMAGE_MIRROR=${mirror}`, 'NO_COLOR=1'];
  const timed = (...args: string[]) => {
    const t0 = performance.now();
    const r = spawnSync(inNs, ['env', ...envArgs, rum, ...args], { cwd: proj, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`rum ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-2000)}`);
    return { ms: performance.now() - t0, stdout: r.stdout };
  };
  const close = () => {
    try {
      timed('destroy', '-y');
    } catch {
      /* reported by the run that failed */
    }
    rmSync(work, { recursive: true, force: true });
  };
  return { work, dataHome, timed, close };
}
