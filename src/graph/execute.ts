// Owns: running a plan. p-graph orders the nodes and bounds concurrency; the node wrapper here
// decides (re-assessing with the real upstream outputs: early cutoff), builds and records.
import { PGraph } from 'p-graph';
import { RumError } from '../errors.js';
import type { Outcome, RunEvent } from './events.js';
import { apiFor, assess, fingerprintNow, type Engine, type Plan, type PlannedNode } from './plan.js';

export interface RunResult {
  outcomes: Map<string, Outcome>;
  /** The first failure, naming its node. */
  failure?: { node: string; error: unknown };
  interrupted: boolean;
}

export interface ExecuteOptions {
  concurrency?: number;
  signal?: AbortSignal;
  onEvent?: (e: RunEvent) => void;
}

const settledOk = (o: Outcome | undefined) =>
  o !== undefined && (o.type === 'built' || o.type === 'fresh' || o.type === 'cutoff' || o.type === 'kept');

export async function execute<C>(e: Engine<C>, plan: Plan, opts: ExecuteOptions = {}): Promise<RunResult> {
  const signal = opts.signal ?? new AbortController().signal;
  const emit = opts.onEvent ?? (() => undefined);
  const outcomes = new Map<string, Outcome>();
  let failure: RunResult['failure'];

  const run = async (n: PlannedNode): Promise<void> => {
    // Never throws into p-graph: it would reject at once while siblings still run.
    const blocker = n.deps.find((d) => !settledOk(outcomes.get(d)));
    if (blocker !== undefined || failure || signal.aborted) {
      const because = blocker ?? (signal.aborted ? 'interrupted' : `${failure!.node} failed`);
      outcomes.set(n.id, { type: 'skipped', because });
      return;
    }
    const set = (o: Outcome) => {
      outcomes.set(n.id, o);
      emit({ type: 'done', node: n.id, outcome: o });
    };
    // The plan assessed this node moments ago, under the same lock: when it was fresh and nothing
    // upstream has produced anything new since, that answer stands. (Asking libvirt and the guest
    // a second time was a third of a no-op `up`'s own work.)
    const unchanged = (d: string) => ['fresh', 'kept', 'cutoff'].includes(outcomes.get(d)!.type);
    if (n.state === 'fresh' && n.deps.every(unchanged)) return set({ type: 'fresh' });
    try {
      const rule = n.rule as unknown as (typeof e.rules)[number];
      const a = await assess(e, rule, [], signal);
      if (a.state === 'fresh') return set({ type: 'fresh' });
      if (a.state === 'kept') return set({ type: 'kept', action: a.action });

      emit({ type: 'start', node: n.id, action: a.action, reason: a.reason });
      const t0 = performance.now();
      const api = apiFor(e, rule, signal);
      const previous = e.state.get(n.id);
      await e.state.forget(n.id); // from here a crash reads as "missing", never a false "fresh"
      const out = await rule.build({
        ...api,
        inputs: a.inputs ?? {},
        action: a.action,
        progress: (message, fraction) => emit({ type: 'progress', node: n.id, message, fraction }),
        notice: (message) => emit({ type: 'notice', node: n.id, message }),
      });
      // The key is taken after the build when an input file only exists now.
      const fp = a.fingerprint ?? (await fingerprintNow(e, rule, a.inputs ?? {}));
      if (typeof fp === 'string') throw new RumError('BUG', `${n.id} built, but its input ${fp} is still missing`);
      await e.state.record(n.id, {
        key: fp.key,
        fields: fp.fields,
        output: out.digest,
        ...(out.data === undefined ? {} : { data: out.data }),
        time: new Date().toISOString(),
      });
      const ms = Math.round(performance.now() - t0);
      set(previous && previous.output === out.digest ? { type: 'cutoff', ms } : { type: 'built', action: a.action, ms });
    } catch (error) {
      failure ??= { node: n.id, error };
      set({ type: 'failed', error });
    }
  };

  for (const warning of plan.warnings ?? []) emit({ type: 'warning', warning });
  const byId = new Map(plan.nodes.map((n) => [n.id, n]));
  const graph = new PGraph(
    new Map(plan.nodes.map((n) => [n.id, { run: () => run(byId.get(n.id)!) }])),
    plan.edges,
  );
  await graph.run({ concurrency: opts.concurrency ?? 4 });
  // Every node has settled here: only now may the caller release the lock.
  return { outcomes, interrupted: signal.aborted, ...(failure ? { failure } : {}) };
}
