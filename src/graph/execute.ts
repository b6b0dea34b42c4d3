// Owns: running a plan. p-graph orders the nodes and bounds concurrency; the node wrapper here
// decides (re-assessing with the real upstream outputs: early cutoff), builds and records.
import { PGraph } from 'p-graph';
import { RumError } from '../errors.js';
import type { Outcome, RunEvent } from './events.js';
import type { GraphNode } from './nodes.js';
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
  const failures = new Map<string, string>(); // machine -> the node that failed in it

  // A shared node is recorded in each machine it serves: a machine that joined later (or lost
  // its record) gets the record of the one that built it, so its own dependents can read it.
  const mirror = async (node: GraphNode<C>) => {
    const rec = node.primary.state.get(node.rule.id);
    if (!rec) return;
    await Promise.all(node.scopes.filter((s) => s.state.get(node.rule.id)?.key !== rec.key).map((s) => s.state.record(node.rule.id, rec)));
  };

  const run = async (n: PlannedNode): Promise<void> => {
    // Never throws into p-graph: it would reject at once while siblings still run.
    // A failure stops new work in its own machine; other machines go on (what they share with
    // it has already been built, or they are blocked by it too).
    const blocker = n.deps.find((d) => !settledOk(outcomes.get(d)));
    const failed = failures.get(n.machine);
    if (blocker !== undefined || failed || signal.aborted) {
      const because = blocker ?? (signal.aborted ? 'interrupted' : `${failed} failed`);
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
    const node = n.node as unknown as GraphNode<C>;
    const { rule, primary } = node;
    try {
      if (n.state === 'fresh' && n.deps.every(unchanged)) {
        await mirror(node);
        return set({ type: 'fresh' });
      }
      const a = await assess(e, node, [], signal);
      if (a.state === 'fresh') {
        await mirror(node);
        return set({ type: 'fresh' });
      }
      if (a.state === 'kept') return set({ type: 'kept', action: a.action });

      emit({ type: 'start', node: n.id, action: a.action, reason: a.reason });
      const t0 = performance.now();
      const api = apiFor(e, node, signal);
      const previous = primary.state.get(rule.id);
      // From here a crash reads as "missing", never a false "fresh".
      await Promise.all(node.scopes.map((s) => s.state.forget(rule.id)));
      const out = await rule.build({
        ...api,
        inputs: a.inputs ?? {},
        action: a.action,
        progress: (message, fraction) => emit({ type: 'progress', node: n.id, message, fraction }),
        notice: (message) => emit({ type: 'notice', node: n.id, message }),
      });
      // The key is taken after the build when an input file only exists now.
      const fp = a.fingerprint ?? (await fingerprintNow(e, node, a.inputs ?? {}));
      if (typeof fp === 'string') throw new RumError('BUG', `${n.id} built, but its input ${fp} is still missing`);
      const rec = {
        key: fp.key,
        fields: fp.fields,
        output: out.digest,
        ...(out.data === undefined ? {} : { data: out.data }),
        time: new Date().toISOString(),
      };
      await Promise.all(node.scopes.map((s) => s.state.record(rule.id, rec)));
      const ms = Math.round(performance.now() - t0);
      set(previous && previous.output === out.digest ? { type: 'cutoff', ms } : { type: 'built', action: a.action, ms });
    } catch (error) {
      failure ??= { node: n.id, error };
      for (const m of node.scopes) if (!failures.has(m.name)) failures.set(m.name, n.id);
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
