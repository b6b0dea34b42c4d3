// What the graph commands share: options, and running a plan under the VM's lock with Ctrl-C
// cancelling cleanly.
import { exitCodes, RumError } from '../../errors.js';
import { asNoSpace } from '../../files/space.js';
import { execute, type RunResult } from '../../graph/execute.js';
import { describeReason } from '../../graph/events.js';
import { makePlan, type Plan, type PlannedNode, type PlanOptions } from '../../graph/plan.js';
import type { StateStore } from '../../graph/state.js';
import { engineFor, lockVm, openVm, type OpenVm } from '../../vm.js';
import { Output } from '../output.js';

export interface CommonOptions {
  config?: string;
  json?: boolean;
  wait?: boolean; // --no-wait sets it false
}

export async function planFor(opts: CommonOptions, planOpts: PlanOptions): Promise<{ o: OpenVm; plan: Plan; state: StateStore }> {
  const o = await openVm({ config: opts.config });
  const e = await engineFor(o, planOpts);
  const plan = await makePlan(e);
  await e.digests.save();
  return { o, plan, state: e.state };
}

/** Plans and runs under the lock. Ctrl-C stops new work; running work finishes or is cancelled. */
export async function runGraph(
  out: Output,
  opts: CommonOptions,
  planOpts: PlanOptions,
  hooks: {
    /** Runs under the lock, before anything is assessed (so what it changes is seen); again
     * when a lost artifact turns the run into a reset. */
    before?: (o: OpenVm, planOpts: PlanOptions) => Promise<void>;
    /** A stateful artifact is gone: return to go on as --reset, throw to stop. Default: stop. */
    onLost?: (lost: PlannedNode[]) => Promise<void>;
  } = {},
): Promise<{ o: OpenVm; result: RunResult; plan: Plan }> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    if (++interrupts > 1) process.exit(exitCodes.INTERRUPTED); // a second Ctrl-C: leave now
    out.info('interrupted: finishing what is running (Ctrl-C again to leave at once)');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  const o = await openVm({ config: opts.config });
  const lock = await lockVm(o, {
    noWait: opts.wait === false,
    signal: controller.signal,
    onWait: (pid) => out.info(`waiting for another rum (pid ${pid}) to finish with VM ${o.config.name}...`),
  });
  try {
    await hooks.before?.(o, planOpts);
    let e = await engineFor(o, planOpts);
    let plan = await makePlan(e, controller.signal);
    const lost = plan.nodes.filter((n) => n.reason?.type === 'lost');
    if (lost.length > 0) {
      await (hooks.onLost ?? refuseLost)(lost);
      planOpts = { ...planOpts, reset: true };
      await hooks.before?.(o, planOpts);
      e = await engineFor(o, planOpts);
      plan = await makePlan(e, controller.signal);
    }
    if (planOpts.reset) await e.state.bumpGeneration();
    const result = await execute(e, plan, { signal: controller.signal, onEvent: (ev) => out.event(ev) });
    await e.digests.save();
    return { o, result, plan };
  } finally {
    await lock.release();
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
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
