// `rum up`: build what is stale and start the VM; `--dry-run` shows the plan and changes nothing.
import { exitCodes, RumError } from '../../errors.js';
import { describeReason } from '../../graph/events.js';
import { planChanges, type Plan, type PlannedNode, type PlanOptions } from '../../graph/plan.js';
import { sessionMode, type Machine } from '../../machine/machine.js';
import { Output } from '../output.js';
import { lostWhat, namesOf, planFor, refuseLost, runGraph, subjectOf, throwIfFailed, type CommonOptions } from './common.js';
import { canAsk, confirm } from '../prompt.js';

export interface UpOptions extends CommonOptions {
  'dry-run'?: boolean;
  reset?: boolean;
  restart?: boolean;
  yes?: boolean;
  attach?: boolean;
  'drop-snapshots'?: boolean;
}

/** What the plan cannot say by itself: changes that wait for the user. */
export function planHints(plan: Plan, single = true): string[] {
  const hints: string[] = [];
  const named = (n: PlannedNode) => (single ? '' : ` ${n.machine}`);
  for (const n of plan.nodes) {
    if (n.action === 'kept-needs-reset' && n.rule.id === 'overlay' && n.reason?.type === 'upstream-changed' && n.reason.nodes.some((d) => d.endsWith('layer')))
      hints.push(`the provisioned layer changed (provision.packages, provision.image or apt_sources): the disk stays on the image or layer it was made on; \`rum up --reset${named(n)}\` makes a fresh disk on the new one (the guest's data is lost)`);
    else if (n.action === 'kept-needs-reset')
      hints.push(`${n.id} is kept: ${n.reason ? describeReason(n.reason) : 'changed'}; \`rum up --reset${named(n)}\` applies it (a fresh disk: the guest's data is lost)`);
    if (n.action === 'kept-needs-restart')
      hints.push(`${single ? 'the VM' : n.machine} runs with an older definition; \`rum up --restart${named(n)}\` applies it`);
  }
  for (const m of new Set(plan.nodes.map((n) => n.machine))) {
    const userData = plan.nodes.find((n) => n.machine === m && n.rule.id === 'user-data');
    const overlay = plan.nodes.find((n) => n.machine === m && n.rule.id === 'overlay');
    const firstBootDone = overlay !== undefined && overlay.reason?.type !== 'missing' && overlay.reason?.type !== 'reset';
    // rum's own recipe changed (a new release): what changed is bootcmd's every-boot setup.
    if (userData?.state === 'stale' && userData.reason?.type === 'recipe-changed' && firstBootDone)
      hints.push(`this rum sets the guest up differently at boot: the guest takes it at its next start (\`rum down${named(userData)}\`, then \`rum up${named(userData)}\`); its disk is kept`);
    else if (userData?.state === 'stale' && userData.reason?.type !== 'missing' && firstBootDone)
      hints.push(`user-data changes take effect on a fresh first boot only (\`rum up --reset${named(userData)}\`); \`rum provision${named(userData)}\` reruns the scripts`);
  }
  return hints;
}

export async function up(first: string | undefined, opts: UpOptions): Promise<number> {
  const out = new Output(opts);
  const names = namesOf(opts, first);
  const planOpts = { reset: opts.reset === true, restart: opts.restart === true };
  if (opts['dry-run']) {
    const { o, machines, plan } = await planFor(opts, planOpts, names);
    // What `up` itself would refuse, a dry run refuses too: a domain of a machine's name that is
    // not ours, or a libvirt that does not answer for a machine rum claimed (its domain may be
    // there without a record). A machine never claimed has nothing in libvirt: its plan needs
    // no daemon, and one that does not answer is left for `up` to report.
    for (const m of machines) {
      if (o.claimed.has(m)) await m.owned();
      else if ((await m.owner().catch(() => undefined))?.owner === 'other') await m.owned();
    }
    await (await import('../../machine/layer-builder.js')).noteLayerCache(plan);
    const lose = (await discarding(plan, machines)).map((m) => `${o.project.single ? 'the guest' : m.name} is suspended, but its definition changed: its saved memory would be discarded and it would boot afresh`);
    out.plan(plan, subjectOf(o), [...planHints(plan, o.project.single), ...apartHints(machines), ...lose]);
    return planChanges(plan) ? exitCodes.PLAN_CHANGES : 0;
  }
  if (opts.attach && names.length !== 1) {
    // Known before anything boots: the file has machines when there is more than one VM name.
    const { openProject } = await import('../../machine/project.js');
    const o = await openProject({ config: opts.config });
    if (!o.project.single) throw new RumError('USAGE', '--attach serves one machine: name it', `rum up --attach ${o.machines.map((m) => m.name).join(' | ')}`);
  }
  if (opts.reset && !opts['drop-snapshots']) {
    const { openProject, pick } = await import('../../machine/project.js');
    const o = await openProject({ config: opts.config });
    await keepSnapshots(names.length === 0 ? o.machines : pick(o, names));
  }
  if (opts.reset && !opts.yes) {
    await confirm(out, `rum up --reset recreates ${names.length > 0 ? `the disk of ${names.join(', ')}` : 'the VM disk'}: everything written in the guest is lost. Continue?`);
  }
  const before = async (machines: Machine[], run: PlanOptions) => {
    for (const m of machines) {
      // A domain of this name that is not ours (or a libvirt that does not answer) stops the run
      // here, before anything is built for a domain rum could never define. The answer is
      // shared with the plan: no second question.
      const domain = await m.owned();
      if (run.reset && !opts['drop-snapshots']) await keepSnapshots([m]);
      // The disk is about to be replaced: the guest must not be running on it.
      if (run.reset && domain === 'ours') {
        out.info(`stopping ${o1(machines, m)} for --reset`);
        await m.stop({ timeoutMs: 30_000, force: true, progress: (t) => out.waiting(t) });
        await m.discardSaved(); // saved memory of the old disk must never meet the new one
      }
    }
  };
  // A lost disk or key: on a terminal, asked; elsewhere, only --reset goes on.
  const onLost = async (lost: PlannedNode[]) => {
    if (!canAsk()) await refuseLost(lost);
    await confirm(out, `${lostWhat(lost)}. Make a fresh disk and run the first boot again (nothing of the old guest is kept)? Continue?`);
  };
  // Saved memory belongs to the definition it was saved with: losing it is asked first.
  const afterPlan = async (plan: Plan, all: Machine[]) => {
    const lose = await discarding(plan, all);
    if (lose.length === 0 || opts.yes) return;
    const who = all.length === 1 ? 'the guest' : lose.map((m) => m.name).join(', ');
    await confirm(out, `${who} ${lose.length > 1 ? 'are' : 'is'} suspended, but the definition changed since: the saved memory is discarded and the guest boots afresh (its disk is kept). Continue?`);
  };
  const pin = { locked: opts.locked === true };
  const { o, machines, result, plan } = await runGraph(out, opts, planOpts, names, { before, onLost, afterPlan, pin });
  throwIfFailed(result);
  // What really happened, not what the plan feared: early cutoff may have kept a node fresh.
  // A new user-data is said too: what the running guest does with it waits for its next start.
  const said = plan.nodes.flatMap((n): PlannedNode[] => {
    const t = result.outcomes.get(n.id)?.type;
    if (t === 'kept' || (n.rule.id === 'user-data' && t === 'built')) return [n];
    // The disk only tells whether the first boot was done; what the plan feared for it may not have come.
    return n.rule.id === 'overlay' ? [{ ...n, action: 'none' }] : [];
  });
  for (const h of [...planHints({ ...plan, nodes: said }, o.project.single), ...apartHints(machines)]) out.notice(h);
  out.result(result, subjectOf(o));
  if (opts.attach) {
    const m = names.length === 1 ? machines.find((x) => x.name === names[0])! : machines[0]!;
    const c = m.config;
    // The forwards and the bridge pick their machine as `rum forward NAME` would.
    const one = o.project.single ? opts : { ...opts, _: [m.name] };
    // Both run until Ctrl-C (each listens for it); either failing ends the attach.
    const jobs: Promise<number>[] = [];
    if (c.network.mode === 'nat' && c.ports.some((p) => p.proto === 'tcp'))
      jobs.push(import('./forward.js').then((m) => m.runForwards(one, out)));
    if (c.mounts.some((m) => m.inotify && !m.readonly)) jobs.push(import('./watch.js').then((m) => m.watch(one)));
    if (jobs.length === 0) out.info('nothing to attach to: no nat port forwards and no inotify: true mounts');
    const codes = await Promise.all(jobs);
    return codes.find((c) => c !== 0) ?? 0;
  }
  return 0;
}

/** Machines on user networking each have QEMU's own network: said, never papered over. */
export function apartHints(machines: Machine[]): string[] {
  const apart = machines.filter((m) => m.config.network.mode === 'user');
  if (machines.length < 2 || apart.length === 0) return [];
  return [
    `${apart.map((m) => m.name).join(', ')} ${apart.length > 1 ? 'use' : 'uses'} user networking (QEMU's own, one per machine${apart.some((m) => sessionMode(m)) ? `, the only kind ${apart[0]!.config.libvirt.uri} has` : ''}): ` +
      "no machine reaches another by name or by its address; one reaches another's forwarded ports: as 10.0.2.2:<host port> from inside the guest. network.mode: nat under qemu:///system gives them a network with names",
  ];
}

/** Suspended machines whose running-domain will start rather than resume: their definition
 * changed since the save. */
async function discarding(plan: Plan, machines: Machine[]): Promise<Machine[]> {
  // Only a defined domain can be suspended; its plan asked libvirt already (the answer is
  // shared). A plan for one never defined asks nothing, and needs no daemon.
  const starts = plan.nodes.filter(
    (n) => n.rule.id === 'running-domain' && (n.action === 'start' || n.action === 'restart') && n.node.primary.state.get('defined-domain') !== undefined,
  );
  const found = await Promise.all(
    starts.map(async (n) => {
      const m = machines.find((x) => x.name === n.machine);
      return m && (await m.domainFacts()).state === 'suspended' ? m : undefined;
    }),
  );
  return found.filter((m): m is Machine => m !== undefined);
}

/** A reset makes a fresh disk on the base image: the snapshots are layers of the old one, and
 * go only when asked (--drop-snapshots). A lost disk lands here too: a snapshot may bring it back. */
async function keepSnapshots(machines: Machine[]): Promise<void> {
  const { readSnapshots } = await import('../../machine/snapshots.js');
  for (const m of machines) {
    const single = m.name === m.domain; // a file without machines: the machine is the VM
    const names = (await readSnapshots(m.vm)).snapshots.map((s) => s.name);
    if (names.length === 0) continue;
    const at = single ? '' : ` ${m.name}`;
    throw new RumError(
      'USAGE',
      `a fresh disk for ${single ? 'the VM' : m.name} would drop its snapshots (${names.join(', ')}): they are layers of the disk it has now`,
      `\`rum up${at} --reset --drop-snapshots\` deletes them with it; \`rum snapshot restore${at} ${names.at(-1)}\` goes back to one instead. Nothing was changed`,
    );
  }
}

/** "the guest", or "web" when there are several. */
const o1 = (all: Machine[], m: Machine) => (all.length === 1 ? 'the guest' : m.name);
