// `rum up`: build what is stale and start the VM; `--dry-run` shows the plan and changes nothing.
import { exitCodes } from '../../errors.js';
import { describeReason } from '../../graph/events.js';
import type { Plan, PlannedNode, PlanOptions } from '../../graph/plan.js';
import { ctxFor, type OpenVm } from '../../vm.js';
import { Output } from '../output.js';
import { lostWhat, planFor, refuseLost, runGraph, throwIfFailed, type CommonOptions } from './common.js';
import { canAsk, confirm } from '../prompt.js';

export interface UpOptions extends CommonOptions {
  'dry-run'?: boolean;
  reset?: boolean;
  restart?: boolean;
  yes?: boolean;
  attach?: boolean;
}

/** What the plan cannot say by itself: changes that wait for the user. */
export function planHints(plan: Plan): string[] {
  const hints: string[] = [];
  for (const n of plan.nodes) {
    if (n.action === 'kept-needs-reset')
      hints.push(`${n.id} is kept: ${n.reason ? describeReason(n.reason) : 'changed'}; \`rum up --reset\` applies it (a fresh disk: the guest's data is lost)`);
    if (n.action === 'kept-needs-restart')
      hints.push(`the VM runs with an older definition; \`rum up --restart\` applies it`);
  }
  const userData = plan.nodes.find((n) => n.id === 'user-data');
  const overlay = plan.nodes.find((n) => n.id === 'overlay');
  const firstBootDone = overlay !== undefined && overlay.reason?.type !== 'missing' && overlay.reason?.type !== 'reset';
  if (userData?.state === 'stale' && userData.reason?.type !== 'missing' && firstBootDone)
    hints.push('user-data changes take effect on a fresh first boot only (`rum up --reset`); `rum provision` reruns the scripts');
  return hints;
}

export async function up(opts: UpOptions): Promise<number> {
  const out = new Output(opts);
  const planOpts = { reset: opts.reset === true, restart: opts.restart === true };
  if (opts['dry-run']) {
    const { o, plan } = await planFor(opts, planOpts);
    // What `up` itself would refuse, a dry run refuses too (a plan alone asks libvirt only once
    // a domain was recorded).
    await (await import('../../../tasks/defined-domain.js')).ownedDomain(ctxFor(o));
    out.plan(plan, o.config.name, planHints(plan));
    return plan.nodes.some((n) => n.action !== 'none') ? exitCodes.PLAN_CHANGES : 0;
  }
  if (opts.reset && !opts.yes) {
    await confirm(out, 'rum up --reset recreates the VM disk: everything written in the guest is lost. Continue?');
  }
  const before = async (vm: OpenVm, run: PlanOptions) => {
    const [{ stopDomain }, { ownedDomain }] = await Promise.all([
      import('../../../tasks/running-domain.js'),
      import('../../../tasks/defined-domain.js'),
    ]);
    const ctx = ctxFor(vm);
    // A domain of this name that is not ours (or a libvirt that does not answer) stops the run
    // here, before anything is built for a domain rum could never define. The answer is shared
    // with the plan: no second question.
    const domain = await ownedDomain(ctx);
    if (!run.reset) return;
    // The disk is about to be replaced: the guest must not be running on it.
    if (domain === 'ours') {
      out.info('stopping the guest for --reset');
      await stopDomain(ctx, { timeoutMs: 30_000, force: true, progress: (m) => out.waiting(m) });
    }
  };
  // A lost disk or key: on a terminal, asked; elsewhere, only --reset goes on.
  const onLost = async (lost: PlannedNode[]) => {
    if (!canAsk()) await refuseLost(lost);
    await confirm(out, `${lostWhat(lost)}. Make a fresh disk and run the first boot again (nothing of the old guest is kept)? Continue?`);
  };
  const { o, result, plan } = await runGraph(out, opts, planOpts, { before, onLost });
  throwIfFailed(result);
  // What really happened, not what the plan feared: early cutoff may have kept a node fresh.
  const kept = plan.nodes.filter((n) => result.outcomes.get(n.id)?.type === 'kept');
  for (const h of planHints({ ...plan, nodes: kept })) out.notice(h);
  out.result(result, o.config.name);
  if (opts.attach) {
    // Both run until Ctrl-C (each listens for it); either failing ends the attach.
    const jobs: Promise<number>[] = [];
    if (o.config.network.mode === 'nat' && o.config.ports.some((p) => p.proto === 'tcp'))
      jobs.push(import('./forward.js').then((m) => m.runForwards(opts, out)));
    if (o.config.mounts.some((m) => m.inotify && !m.readonly)) jobs.push(import('./watch.js').then((m) => m.watch(opts)));
    if (jobs.length === 0) out.info('nothing to attach to: no nat port forwards and no inotify: true mounts');
    const codes = await Promise.all(jobs);
    return codes.find((c) => c !== 0) ?? 0;
  }
  return 0;
}
