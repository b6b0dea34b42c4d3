// Owns: deciding, per node, whether it is fresh and, if not, why and what a run would do.
// The same assessment answers `up`, `up --dry-run`, `build`, `graph` and `status`.
import { access } from 'node:fs/promises';
import { RumError } from '../errors.js';
import { DigestCache, type Digest } from './digest.js';
import type { Action, EngineWarning, NodeState, StaleReason } from './events.js';
import { diffFields, fingerprint, type Fingerprint } from './key.js';
import { allDeps, orderNodes, type GraphNode } from './nodes.js';
import type { AnyRule, NodeApi, Output, RuleRef } from './rule.js';

export interface PlanOptions {
  reset?: boolean;
  restart?: boolean;
  /** Build only these and what they need (like `make TARGET`). Default: every rule. */
  targets?: string[];
}

export interface Assessment {
  state: NodeState;
  action: Action;
  reason?: StaleReason;
  /** True when the reason is an upstream node that is itself stale: it rebuilds only if that
   * node's output really changes (early cutoff may keep it fresh). */
  tentative?: boolean;
  fingerprint?: Fingerprint;
  inputs?: Record<string, unknown>;
}

export interface PlannedNode extends Assessment {
  id: string;
  rule: AnyRule<unknown>;
  /** The machine it belongs to; a shared node: the first of the machines it serves. */
  machine: string;
  deps: string[]; // keyed and order-only, within the planned set
  output?: string;
  node: GraphNode<unknown>;
  /** What the command showing the plan adds about the artifact (the disk's snapshot layers). */
  note?: string;
}

export interface Plan {
  nodes: PlannedNode[]; // build order
  edges: [string, string][];
  /** Said once by whoever shows the plan or runs it (a salvaged state record). */
  warnings?: EngineWarning[];
}

export interface Engine<C> {
  nodes: GraphNode<C>[];
  digests: DigestCache;
  opts: PlanOptions;
}

export function apiFor<C>(e: Engine<C>, n: GraphNode<C>, signal: AbortSignal): NodeApi<C> {
  const state = n.primary.state;
  return {
    ctx: n.primary.ctx,
    upstream: ((ref: RuleRef) => {
      const out = state.output(ref.id);
      if (!out) throw new RumError('BUG', `${n.id} read ${ref.id}, which has no output yet`);
      return out;
    }) as NodeApi<C>['upstream'],
    previous: state.output(n.rule.id),
    signal,
    digestFile: (path) => e.digests.digest(path),
    progress: () => undefined,
    notice: () => undefined,
  };
}

/** The node's key from its inputs, its files' digests and its keyed dependencies' recorded
 * outputs; or the path of an input file that does not exist. */
export async function fingerprintNow<C>(
  e: Engine<C>,
  n: GraphNode<C>,
  inputs: Record<string, unknown>,
): Promise<Fingerprint | string> {
  const { rule, primary } = n;
  const files: Record<string, Digest> = {};
  for (const [label, path] of Object.entries(rule.files?.(primary.ctx) ?? {})) {
    try {
      files[label] = await e.digests.digest(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      return path;
    }
  }
  const upstream: Record<string, Digest> = {};
  for (const d of n.deps.keys()) upstream[d] = primary.state.get(d)?.output ?? ('' as Digest);
  return fingerprint(rule, inputs, files, upstream);
}

/**
 * Assess one node. `pending` names keyed dependencies that are stale in this plan and not built
 * yet (a dry run): their new output digest is unknown, so this node is stale tentatively.
 */
export async function assess<C>(
  e: Engine<C>,
  n: GraphNode<C>,
  pending: string[],
  signal: AbortSignal,
): Promise<Assessment> {
  const { rule, primary } = n;
  const inputs = await rule.inputs(primary.ctx);
  const rec = primary.state.get(rule.id);
  const stale = async (reason: StaleReason, fp?: Fingerprint, tentative = false): Promise<Assessment> => ({
    ...(await actionFor(e, n, reason, rec !== undefined, signal)),
    fingerprint: fp,
    inputs,
    ...(tentative ? { tentative } : {}),
  });

  // No record: never built, or (a stateful artifact that is there all the same: a crash before
  // recording it, a damaged record) one to adopt as it is, never to make again.
  const unrecorded = async (): Promise<StaleReason> =>
    rule.kind === 'stateful' && (await exists(rule.output?.(primary.ctx))) ? { type: 'unrecorded' } : { type: 'missing' };

  // In a dry run a pending upstream has no output yet; when executing, pending is always empty.
  if (resetting(e, n) && rule.resettable && pending.length > 0) return stale({ type: 'reset' });
  if (!rec && pending.length > 0) return stale(await unrecorded());
  if (pending.length > 0) {
    // An input or recipe change is certain even while an upstream is pending: report it, not
    // the tentative upstream. (Its key is not final yet: the upstream's output is unknown.)
    const now = rec ? await fingerprintNow(e, n, inputs) : undefined;
    const own = now && typeof now !== 'string' ? diffFields(rec!.fields, now.fields) : undefined;
    if (own && (own.type === 'input-changed' || own.type === 'recipe-changed')) return stale(own);
    return stale({ type: 'upstream-changed', nodes: pending }, undefined, true);
  }
  const fp = await fingerprintNow(e, n, inputs);
  if (typeof fp === 'string') return stale(rec ? { type: 'check-failed', why: `${fp} is missing` } : { type: 'missing' });
  if (resetting(e, n) && rule.resettable) return stale({ type: 'reset' }, fp);
  if (!rec) return stale(await unrecorded(), fp);
  if (fp.key !== rec.key) return stale(diffFields(rec.fields, fp.fields), fp);
  if (rule.check) {
    const c = await rule.check(apiFor(e, n, signal));
    if (!c.ok && c.lost) return stale(resetting(e, n) ? { type: 'reset' } : { type: 'lost', why: c.why }, fp);
    if (!c.ok) {
      const a = await stale({ type: 'check-failed', why: c.why }, fp);
      // The check knows best what brings the thing back (resume a suspended guest, not start it).
      return c.action ? { ...a, action: c.action } : a;
    }
  }
  return { state: 'fresh', action: 'none', fingerprint: fp, inputs };
}

async function actionFor<C>(
  e: Engine<C>,
  n: GraphNode<C>,
  reason: StaleReason,
  existed: boolean,
  signal: AbortSignal,
): Promise<Assessment> {
  const { rule } = n;
  const verbs = rule.verbs ?? { build: 'build', rebuild: 'rebuild' };
  const rebuild = existed || reason.type === 'reset' ? verbs.rebuild : verbs.build;
  const keyChange = reason.type === 'input-changed' || reason.type === 'upstream-changed' || reason.type === 'recipe-changed';
  if (reason.type === 'unrecorded') return { state: 'stale', action: 'adopt', reason };
  if (rule.kind === 'stateful' && keyChange) return { state: 'kept', action: 'kept-needs-reset', reason };
  if (reason.type === 'lost') return { state: 'kept', action: 'kept-needs-reset', reason };
  if (rule.restartGuard && keyChange && rule.check) {
    // Only a live effect is guarded: a stopped domain is simply started with the new definition.
    const live = await rule.check(apiFor(e, n, signal));
    if (live.ok) {
      return e.opts.restart
        ? { state: 'stale', action: verbs.rebuild, reason }
        : { state: 'kept', action: 'kept-needs-restart', reason };
    }
    return { state: 'stale', action: verbs.build, reason };
  }
  if (rule.restartGuard && reason.type === 'check-failed') return { state: 'stale', action: verbs.build, reason };
  return { state: 'stale', action: rebuild, reason };
}

/** The whole plan, nothing touched: every node assessed against the recorded state. */
export async function makePlan<C>(e: Engine<C>, signal: AbortSignal = new AbortController().signal): Promise<Plan> {
  const ordered = orderNodes(e.nodes, e.opts.targets);
  const inPlan = new Set(ordered.map((n) => n.id));
  const stale = new Set<string>();
  const nodes: PlannedNode[] = [];
  for (const n of ordered) {
    const pending = [...n.deps.values()].filter((d) => stale.has(d));
    const a = await assess(e, n, pending, signal);
    if (a.state === 'stale') stale.add(n.id);
    const deps = allDeps(n).filter((d) => inPlan.has(d));
    const output = n.rule.output?.(n.primary.ctx);
    nodes.push({ ...a, id: n.id, rule: n.rule as AnyRule<unknown>, machine: n.primary.name, deps, ...(output ? { output } : {}), node: n as GraphNode<unknown> });
  }
  const edges = nodes.flatMap((n) => n.deps.map((d): [string, string] => [d, n.id]));
  const stores = new Set(ordered.flatMap((n) => n.scopes.map((s) => s.state)));
  const warnings: EngineWarning[] = [...stores].flatMap((s) => (s.damage ? [{ type: 'state-damaged' as const, ...s.damage }] : []));
  return { nodes, edges, ...(warnings.length > 0 ? { warnings } : {}) };
}

/** --reset applies to this node: asked for the whole run, or for every machine it serves. */
const resetting = <C>(e: Engine<C>, n: GraphNode<C>) => e.opts.reset === true || n.scopes.every((s) => s.reset === true);

async function exists(path: string | undefined): Promise<boolean> {
  return path !== undefined && (await access(path).then(() => true, () => false));
}

export { changing, planChanges } from './events.js';

export type { Output };
