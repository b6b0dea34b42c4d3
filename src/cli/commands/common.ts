// What the graph commands share: options, choosing machines, and running a plan under the
// project's lock with Ctrl-C cancelling cleanly.
import { exitCodes, RumError } from '../../errors.js';
import { asNoSpace } from '../../files/space.js';
import { execute, type RunResult } from '../../graph/execute.js';
import { useCache, type CacheUse } from '../../image/cache-use.js';
import { describeReason } from '../../graph/events.js';
import { makePlan, type Plan, type PlannedNode, type PlanOptions } from '../../graph/plan.js';
import type { Machine } from '../../machine/machine.js';
import { engineFor, lockProject, openProject, pick, type OpenProject } from '../../machine/project.js';
import { Output } from '../output.js';

export interface CommonOptions {
  config?: string;
  json?: boolean;
  wait?: boolean; // --no-wait sets it false
  locked?: boolean; // use rum.lock as it is: fail when it is missing or does not match rum.yaml
  /** Positional words (sade): machine names, a command, targets. */
  _?: string[];
}

/** The machine names a command was given: its positional words (none: every machine). */
export const namesOf = (opts: CommonOptions, first?: string): string[] =>
  [first, ...(opts._ ?? [])].filter((t): t is string => typeof t === 'string' && t !== '');

/**
 * For a command that acts on one machine and takes more words after it (exec, ssh): with one
 * machine, all words are the command's; with several, the first names the machine.
 */
export async function oneMachine(opts: CommonOptions, words = opts._ ?? []): Promise<{ o: OpenProject; m: Machine; rest: string[] }> {
  const o = await openProject({ config: opts.config, mountSources: false }); // mounts nothing itself
  if (o.project.single) return { o, m: o.machines[0]!, rest: words };
  const [name, ...rest] = words;
  return { o, m: pick(o, name === undefined ? [] : [name], { one: true })[0]!, rest };
}

export async function planFor(
  opts: CommonOptions,
  planOpts: PlanOptions,
  names: string[] = [],
  load: { mountSources?: boolean } = {},
): Promise<{ o: OpenProject; machines: Machine[]; plan: Plan }> {
  const o = await openProject({ config: opts.config, ...load });
  const machines = pick(o, names, { withNeeds: true });
  if (opts.locked) await (await import('../../machine/pinning.js')).checkLocked(o);
  const e = await engineFor(o, machines, planOpts);
  const plan = await makePlan(e);
  await e.digests.save();
  return { o, machines, plan };
}

export interface RunHooks {
  /** Runs under the lock, before anything is assessed (so what it changes is seen); again
   * when a lost artifact turns the run into a reset. */
  before?: (machines: Machine[], planOpts: PlanOptions) => Promise<void>;
  /** A stateful artifact is gone: return to go on as --reset, throw to stop. Default: stop. */
  onLost?: (lost: PlannedNode[]) => Promise<void>;
  /** Bring rum.lock in step first (`up`): pin the images it lacks, or with `locked` only check it. */
  pin?: { locked: boolean };
  /** The final plan, before anything runs: throw to stop. */
  afterPlan?: (plan: Plan, machines: Machine[]) => Promise<void>;
}

/** Plans and runs under the lock. Ctrl-C stops new work; running work finishes or is cancelled.
 * `names`: the machines asked for (with what they need); --reset applies to those only. */
export async function runGraph(
  out: Output,
  opts: CommonOptions,
  planOpts: PlanOptions,
  names: string[] = [],
  hooks: RunHooks = {},
): Promise<{ o: OpenProject; machines: Machine[]; result: RunResult; plan: Plan }> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    if (++interrupts > 1) process.exit(exitCodes.INTERRUPTED); // a second Ctrl-C: leave now
    out.info('interrupted: finishing what is running (Ctrl-C again to leave at once)');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  const o = await openProject({ config: opts.config });
  const machines = pick(o, names, { withNeeds: true });
  const asked = names.length === 0 ? machines : pick(o, names);
  const lock = await lockProject(o, machines, {
    noWait: opts.wait === false,
    signal: controller.signal,
    onWait: (pid) => out.info(`waiting for another rum (pid ${pid}) to finish with ${o.project.single ? `VM ${o.machines[0]!.domain}` : `project ${o.project.name}`}...`),
  });
  let use: CacheUse | undefined;
  try {
    // Registered before anything reads the image cache: a `rum gc` meanwhile refuses.
    use = await useCache({ env: o.env, signal: controller.signal, onWait: out.cacheWait });
    await settleSnapshots(o, machines);
    if (hooks.pin) await pinImages(out, o, machines, hooks.pin.locked, controller.signal);
    await hooks.before?.(planOpts.reset ? asked : machines, planOpts);
    let e = await engineFor(o, machines, { ...planOpts, resetOnly: asked });
    let plan = await makePlan(e, controller.signal);
    const lost = plan.nodes.filter((n) => n.reason?.type === 'lost');
    if (lost.length > 0) {
      await (hooks.onLost ?? refuseLost)(lost);
      // Only the machines that lost something start afresh.
      const losers = machines.filter((m) => lost.some((n) => n.machine === m.name));
      planOpts = { ...planOpts, reset: true };
      await hooks.before?.(losers, planOpts);
      e = await engineFor(o, machines, { ...planOpts, resetOnly: losers });
      plan = await makePlan(e, controller.signal);
    }
    await hooks.afterPlan?.(plan, machines);
    if (planOpts.reset) {
      const stores = new Set(e.nodes.flatMap((n) => n.scopes.filter((s) => s.reset).map((s) => s.state)));
      for (const s of stores) await s.bumpGeneration();
    }
    const result = await execute(e, plan, { signal: controller.signal, onEvent: (ev) => out.event(ev) });
    await e.digests.save();
    return { o, machines, result, plan };
  } finally {
    await use?.release();
    await lock.release();
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}

/** A snapshot operation a killed rum left half-done is finished or undone before anything reads
 * the disk's chain (the domain's definition names it). */
async function settleSnapshots(o: OpenProject, machines: Machine[]): Promise<void> {
  const { readSnapshots } = await import('../../machine/snapshots.js');
  for (const m of machines) if (o.claimed.has(m) && (await readSnapshots(m.vm)).pending) await (await m.snapshots()).settle();
}

/** rum.lock before the plan reads it: checked as it is (--locked), or the images it lacks pinned
 * and written (a first `up`, a new image.base). */
async function pinImages(out: Output, o: OpenProject, machines: Machine[], locked: boolean, signal: AbortSignal): Promise<void> {
  const { checkLocked, pinMissing } = await import('../../machine/pinning.js');
  if (locked) {
    await checkLocked(o);
    return;
  }
  const changes = await pinMissing(o, machines.map((m) => m.config), { progress: (t) => out.waiting(t), note: (t) => out.notice(t), signal }).catch((err: unknown) => {
    if (signal.aborted) throw new RumError('INTERRUPTED', 'interrupted: nothing was left half-written', 'run the command again to finish', { cause: err });
    throw err;
  });
  for (const c of changes) if (c.change === 'added' || c.change === 'changed') out.info(`rum.lock: ${c.image} pinned to ${c.new!.url ?? c.new!.digest}`);
}

/** What is gone, in one sentence ("the VM's disk ... is gone"). */
export function lostWhat(lost: PlannedNode[]): string {
  return lost.map((n) => (n.reason ? describeReason(n.reason) : n.id)).join('; ');
}

export async function refuseLost(lost: PlannedNode[]): Promise<never> {
  throw new RumError(
    'STATE',
    `${lostWhat(lost)}: rum does not replace it without being asked, since the guest's data or its trust in rum's keys went with it`,
    "`rum up --reset` makes a fresh disk and runs the first boot again; or put the file back and run `rum up`",
  );
}

/** The run's failure, if any, as the error the CLI renders (naming the node). */
export function throwIfFailed(result: RunResult): void {
  if (result.interrupted) throw new RumError('INTERRUPTED', 'interrupted: nothing was left half-written', 'run the command again to finish');
  if (!result.failure) return;
  const { node } = result.failure;
  const error = asNoSpace(result.failure.error, undefined);
  if (error instanceof RumError) throw new RumError(error.code, `${node}: ${error.message}`, error.hint, { cause: error });
  throw new RumError('BUG', `${node}: ${(error as Error)?.stack ?? String(error)}`, 'please report it with the output above');
}

/** The name output and --json use for what a command covered: the VM, or the project. */
export const subjectOf = (o: OpenProject): string => (o.project.single ? o.machines[0]!.domain : o.project.name);
