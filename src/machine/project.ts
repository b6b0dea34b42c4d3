// Owns: opening a project for a command: its rum.yaml, a Machine per machine (refusing a
// directory another project owns), choosing machines by name, the project's lock, and the
// engine over rum's rules for the chosen machines.
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { cachedPins, cachedProject, rememberPins, rememberProject } from '../config/cache.js';
import { lockPathFor, readConfig } from '../config/find.js';
import type { Pins } from '../config/lock-file.js';
import type { Project } from '../config/schema.js';
import { RumError } from '../errors.js';
import { writeAtomic } from '../files/atomic.js';
import { acquireLock, type Lock } from '../files/lock.js';
import { sweepTemps } from '../files/sweep.js';
import { DigestCache, initDigests } from '../graph/digest.js';
import { instantiate, type Scope } from '../graph/nodes.js';
import type { Engine, PlanOptions } from '../graph/plan.js';
import { StateStore } from '../graph/state.js';
import { imageCacheDir, VmDir, vmsRoot } from '../paths.js';
import { Machine } from './machine.js';
import { withProjectNetwork } from './network.js';
import type { RumCtx } from '../../tasks/context.js';

export interface GlobalOptions {
  config?: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** false: for a command that mounts nothing, a missing mount source is no error. */
  mountSources?: boolean;
}

export interface OpenProject {
  project: Project;
  machines: Machine[];
  env: NodeJS.ProcessEnv;
  /** Which machines' directories exist yet (a dry run never creates one). */
  claimed: Set<Machine>;
}

export async function openProject(opts: GlobalOptions): Promise<OpenProject> {
  const env = opts.env ?? process.env;
  const [{ file, text }] = await Promise.all([readConfig({ file: opts.config, cwd: opts.cwd }), initDigests()]);
  const lenient = opts.mountSources === false ? { mountSources: false } : {};
  let project = await cachedProject(file, text, env, lenient);
  if (!project) {
    const { parseProject } = await import('../config/load.js'); // yaml + zod: only for a new or changed file
    project = await parseProject(text, file, env, lenient);
    // Only a file checked in full is remembered: a lenient load may have passed a missing source.
    if (opts.mountSources !== false) await rememberProject(file, text, env, project);
  }
  project = withProjectNetwork(project);
  const machines = project.machines.map((c) => new Machine(c, new VmDir(c.name, env), env));
  const claimed = new Set<Machine>();
  await Promise.all(
    machines.map(async (m) => {
      const owner = (await readOwner(m.vm))?.config;
      if (owner !== undefined && owner !== m.config.file) {
        throw new RumError(
          'STATE',
          `the VM name "${m.domain}" is already used by another project: ${owner} (this one: ${m.config.file})`,
          project.single ? `set a different \`name:\` in ${m.config.file}; rum never touches another project's VM` : `set a different project \`name:\` in ${m.config.file}; rum never touches another project's VM`,
        );
      }
      if (owner !== undefined) claimed.add(m);
    }),
  );
  return { project: project, machines, env, claimed };
}

/**
 * The machines a command names, with those they need (`after:`) when `withNeeds`. No names: all.
 * A command that acts on one machine passes `one`: with several machines and no name it says
 * which there are.
 */
export function pick(o: OpenProject, names: readonly string[], opts: { withNeeds?: boolean; one?: boolean } = {}): Machine[] {
  const byName = new Map(o.machines.map((m) => [m.name, m]));
  const choices = () => o.machines.map((m) => m.name).join(', ');
  if (o.project.single && names.length === 0) return o.machines;
  if (o.project.single)
    throw new RumError('USAGE', `${o.project.file} declares one VM and no machines: there is nothing to name`, 'leave the machine name out');
  if (opts.one && names.length !== 1)
    throw new RumError('USAGE', names.length === 0 ? `this project has ${o.machines.length} machines: name one` : 'name one machine', `machines: ${choices()}`);
  for (const n of names) if (!byName.has(n)) throw new RumError('USAGE', `there is no machine named ${JSON.stringify(n)} in ${o.project.file}`, `machines: ${choices()}`);
  if (names.length === 0) return o.machines;
  const chosen = new Set<Machine>();
  const add = (m: Machine) => {
    if (chosen.has(m)) return;
    chosen.add(m);
    if (opts.withNeeds) for (const a of m.config.after) add(byName.get(a)!);
  };
  for (const n of names) add(byName.get(n)!);
  return o.machines.filter((m) => chosen.has(m)); // file order
}

/** owner.json: the rum.yaml that owns this directory; and, for `rum list` (which reads no
 * rum.yaml), the libvirt URI and SSH user it runs with. Files from before those two have only
 * `config`: src/vm-list.ts reads them with an assumed URI, and claim completes them. */
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

/** Creates the machine's directory and claims it for this rum.yaml. */
export async function claim(o: OpenProject, m: Machine): Promise<void> {
  // 0711: private files inside are 0600, but under qemu:///system QEMU (libvirt-qemu) must
  // traverse the directory to open the disk and seed libvirt hands it.
  await mkdir(m.vm.dir, { recursive: true, mode: 0o711 });
  const want: OwnerRecord = { config: m.config.file, uri: m.config.libvirt.uri, user: m.config.ssh.user };
  // Rewritten only when the URI or user changed (or the file predates them): not on every run.
  const have = o.claimed.has(m) ? await readOwner(m.vm) : undefined;
  if (have?.uri !== want.uri || have?.user !== want.user) await writeAtomic(m.vm.path('owner'), `${JSON.stringify(want)}\n`);
  o.claimed.add(m);
}

/** Where the project's lock lives: a file of one VM keeps it in the VM's directory, as it always
 * did; a project of several machines has one beside them. */
function lockPath(o: OpenProject): string {
  return o.project.single ? o.machines[0]!.vm.path('lock') : join(vmsRoot(o.env), '.locks', `${o.project.name}.lock`);
}

/**
 * One run at a time per project: graph runs, lifecycle commands of any of its machines and
 * `rum update` take it. The machines a command works on are claimed first.
 */
export async function lockProject(
  o: OpenProject,
  machines: Machine[],
  opts: { noWait?: boolean; onWait?: (pid: number) => void; signal?: AbortSignal },
): Promise<Lock> {
  for (const m of machines) await claim(o, m);
  const path = lockPath(o);
  // `rum update` claims no machine, and may come before the first `up`: the lock's directory is
  // made, not claimed (without owner.json it is no VM to `rum list`). 0711 as claim() makes it.
  await mkdir(dirname(path), { recursive: true, mode: o.project.single ? 0o711 : 0o700 });
  const lock = await acquireLock(path, {
    what: o.project.single ? `VM ${o.machines[0]!.domain}` : `project ${o.project.name}`,
    noWait: opts.noWait,
    signal: opts.signal,
    onWait: (h) => opts.onWait?.(h.pid),
  });
  // What was learnt of the domains before the lock may be out of date by now: decisions made
  // under the lock ask libvirt again.
  for (const m of o.machines) m.forget();
  // Whatever a killed run left half-written is swept now that no run of this project can be
  // writing. The image cache is shared by this user's VMs: a temp there is kept while its writer lives.
  const before = Date.now();
  await Promise.all([...machines.map((m) => sweepTemps(m.vm.dir, { before })), sweepTemps(imageCacheDir(o.env), { before, depth: 1 })]);
  return lock;
}

/** The engine over rum's rules for these machines; `reset`: the machines --reset applies to. */
export async function engineFor(o: OpenProject, machines: Machine[], opts: PlanOptions & { resetOnly?: Machine[] }): Promise<Engine<RumCtx>> {
  const rulesP = import('../../tasks/index.js');
  const { resetOnly, ...planOpts } = opts;
  const resets = (m: Machine) => planOpts.reset === true && (resetOnly === undefined || resetOnly.includes(m));
  const pins = await readPins(o);
  const scopes = await Promise.all(machines.map((m) => scopeFor(o, m, resets(m), pins)));
  // Keyed by file identity: any machine's directory serves; the first one that exists.
  const home = machines.find((m) => o.claimed.has(m));
  const digests = await DigestCache.open(home?.vm.path('digestCache'));
  const { rules, machineOrder } = await rulesP;
  const names = new Set(machines.map((m) => m.name));
  const q = (m: string, id: string) => (o.project.single ? id : `${m}/${id}`);
  // `after: [db]`: web starts once db answers over SSH.
  const after = machines.flatMap((m) => m.config.after.filter((a) => names.has(a)).map((a): [string, string] => [q(a, machineOrder.ready), q(m.name, machineOrder.start)]));
  const nodes = instantiate(rules, scopes, { qualify: !o.project.single, after });
  return { nodes, digests, opts: { ...planOpts, reset: false } };
}

/** rum.lock's pins (none without the file); a lock read before is not parsed again. */
export async function readPins(o: OpenProject): Promise<Pins | undefined> {
  const path = lockPathFor(o.project.file);
  const bytes = await readFile(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new RumError('CONFIG_INVALID', `cannot read ${path}: ${err.message}`, undefined, { cause: err });
  });
  if (bytes === undefined) return undefined;
  const text = bytes.toString('base64'); // the bytes exactly, as the cache's key
  const cached = await cachedPins(path, text, o.env);
  if (cached) return cached;
  const { parseLock } = await import('../config/lock-file.js'); // yaml: only for a new or changed lock
  const pins = parseLock(bytes, path);
  await rememberPins(path, text, o.env, pins);
  return pins;
}

async function scopeFor(o: OpenProject, m: Machine, reset: boolean, pins: Pins | undefined): Promise<Scope<RumCtx>> {
  const exists = o.claimed.has(m);
  // A damaged record is salvaged, and said by the plan: the next build re-adopts the VM's files.
  const state = await StateStore.open(exists ? m.vm.path('state') : undefined, { ifDamaged: 'salvage' });
  // Once a domain was defined, every plan asks libvirt about it (a virsh process): ask now, so the
  // question overlaps loading the rules and assessing the file nodes. Before that, plans never
  // ask (their upstream is stale), so neither does this. Errors surface where it is used.
  if (state.get('defined-domain')) m.domainFacts().catch(() => {});
  // No record of meta-data (a lost state record): the instance-id the guest last booted with
  // still holds the reset count, so cloud-init does not take the next boot for a new instance.
  if (exists && !state.get('meta-data')) {
    const id = await readFile(m.vm.path('metaData'), 'utf8').then((t) => /^instance-id: "?rum-.*-(\d+)"?$/m.exec(t)?.[1], () => undefined);
    if (id) state.adoptGeneration(Number(id));
  }
  const ctx: RumCtx = {
    machine: m,
    config: m.config,
    vm: m.vm,
    env: o.env,
    project: o.project,
    generation: state.generation + (reset ? 1 : 0),
    ...(pins ? { pins } : {}),
  };
  return { name: m.name, ctx, state, reset };
}
