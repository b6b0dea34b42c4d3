// Owns: opening a VM for a command: its config, its directory (refusing another project's),
// the lock for commands that change things, and the engine over rum's rules.
import { mkdir, readFile } from 'node:fs/promises';
import { cachedConfig, rememberConfig } from './config/cache.js';
import { readConfig } from './config/find.js';
import { RumError } from './errors.js';
import { writeAtomic } from './files/atomic.js';
import { acquireLock, type Lock } from './files/lock.js';
import { sweepTemps } from './files/sweep.js';
import { DigestCache, initDigests } from './graph/digest.js';
import type { Engine, PlanOptions } from './graph/plan.js';
import { StateStore } from './graph/state.js';
import { imageCacheDir, VmDir } from './paths.js';
import type { Config } from './config/schema.js';
import { domainFacts, forgetDomainFacts, type RumCtx } from '../tasks/context.js';

export interface GlobalOptions {
  config?: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export interface OpenVm {
  config: Config;
  vm: VmDir;
  /** Whether the VM directory exists yet (a dry run never creates it). */
  exists: boolean;
}

export async function openVm(opts: GlobalOptions): Promise<OpenVm> {
  const env = opts.env ?? process.env;
  const [{ file, text }] = await Promise.all([readConfig({ file: opts.config, cwd: opts.cwd }), initDigests()]);
  let config = await cachedConfig(file, text, env);
  if (!config) {
    const { parseConfig } = await import('./config/load.js'); // yaml + zod: only for a new or changed file
    config = await parseConfig(text, file, env);
    await rememberConfig(file, text, env, config);
  }
  const vm = new VmDir(config.name, env);
  const owner = (await readOwner(vm))?.config;
  if (owner !== undefined && owner !== config.file) {
    throw new RumError(
      'STATE',
      `the VM name "${config.name}" is already used by another project: ${owner} (this one: ${config.file})`,
      `set a different \`name:\` in ${config.file}; rum never touches another project's VM`,
    );
  }
  return { config, vm, exists: owner !== undefined };
}

/** owner.json: the rum.yaml that owns this directory; and, for `rum list` (which reads no
 * rum.yaml), the libvirt URI and SSH user it runs with. Files from before those two have only
 * `config`: src/vm-list.ts reads them with an assumed URI, and claimVm completes them. */
interface OwnerRecord {
  config: string;
  uri?: string;
  user?: string;
}

async function readOwner(vm: VmDir): Promise<OwnerRecord | undefined> {
  let text: string;
  try {
    text = await readFile(vm.path('owner'), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new RumError('STATE', `${vm.path('owner')} cannot be read (${code ?? (err as Error).message})`, `remove ${vm.dir} if it is not in use`);
  }
  // Never JSON.parse's own message: it quotes the file's bytes, which may be anything.
  let owner: Partial<OwnerRecord> | null = null;
  try {
    owner = JSON.parse(text) as Partial<OwnerRecord> | null;
  } catch {
    // owner stays null: said below
  }
  if (typeof owner?.config !== 'string')
    throw new RumError('STATE', `${vm.path('owner')} is damaged: it names no rum.yaml`, `remove ${vm.dir} if it is not in use`);
  return {
    config: owner.config,
    ...(typeof owner.uri === 'string' ? { uri: owner.uri } : {}),
    ...(typeof owner.user === 'string' ? { user: owner.user } : {}),
  };
}

/** Creates the VM directory and claims it for this rum.yaml. */
export async function claimVm(o: OpenVm): Promise<void> {
  // 0711: private files inside are 0600, but under qemu:///system QEMU (libvirt-qemu) must
  // traverse the directory to open the disk and seed libvirt hands it.
  await mkdir(o.vm.dir, { recursive: true, mode: 0o711 });
  const want: OwnerRecord = { config: o.config.file, uri: o.config.libvirt.uri, user: o.config.ssh.user };
  // Rewritten only when the URI or user changed (or the file predates them): not on every run.
  const have = o.exists ? await readOwner(o.vm) : undefined;
  if (have?.uri !== want.uri || have?.user !== want.user) await writeAtomic(o.vm.path('owner'), `${JSON.stringify(want)}\n`);
  o.exists = true;
}

export async function lockVm(o: OpenVm, opts: { noWait?: boolean; onWait?: (pid: number) => void; signal?: AbortSignal }): Promise<Lock> {
  await claimVm(o);
  const lock = await acquireLock(o.vm.path('lock'), {
    what: `VM ${o.config.name}`,
    noWait: opts.noWait,
    signal: opts.signal,
    onWait: (h) => opts.onWait?.(h.pid),
  });
  // What was learnt of the domain before the lock may be out of date by now: decisions made
  // under the lock ask libvirt again.
  forgetDomainFacts(o);
  // Whatever a killed run left half-written is swept now that no run of this VM can be writing.
  // The image cache is shared by this user's VMs: a temp there is kept while its writer lives.
  const before = Date.now();
  await Promise.all([sweepTemps(o.vm.dir, { before }), sweepTemps(imageCacheDir(), { before, depth: 1 })]);
  return lock;
}

/** The rule context for commands that act on the domain outside a graph run (down, destroy). */
export function ctxFor(o: OpenVm, env = process.env): RumCtx {
  return { config: o.config, vm: o.vm, env, generation: 0 };
}

export async function engineFor(o: OpenVm, opts: PlanOptions, env = process.env): Promise<Engine<RumCtx>> {
  const rulesP = import('../tasks/index.js');
  const [state, digests] = await Promise.all([
    // A damaged record is salvaged, and said by the plan: the next build re-adopts the VM's files.
    StateStore.open(o.exists ? o.vm.path('state') : undefined, { ifDamaged: 'salvage' }),
    DigestCache.open(o.exists ? o.vm.path('digestCache') : undefined),
  ]);
  // Once a domain was defined, every plan asks libvirt about it (a virsh process): ask now, so the
  // question overlaps loading the rules and assessing the file nodes. Before that, plans never
  // ask (their upstream is stale), so neither does this. Errors surface where it is used.
  if (state.get('defined-domain')) domainFacts({ config: o.config, vm: o.vm, env }).catch(() => {});
  // No record of meta-data (a lost state record): the instance-id the guest last booted with
  // still holds the reset count, so cloud-init does not take the next boot for a new instance.
  if (o.exists && !state.get('meta-data')) {
    const id = await readFile(o.vm.path('metaData'), 'utf8').then((t) => /^instance-id: "?rum-.*-(\d+)"?$/m.exec(t)?.[1], () => undefined);
    if (id) state.adoptGeneration(Number(id));
  }
  const { rules } = await rulesP;
  const ctx: RumCtx = { config: o.config, vm: o.vm, env, generation: state.generation + (opts.reset ? 1 : 0) };
  return { ctx, rules, state, digests, opts };
}
