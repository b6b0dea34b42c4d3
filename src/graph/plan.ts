// Owns: deciding, per node, whether it is fresh and, if not, why and what a run would do.
// The same assessment answers `up`, `up --dry-run`, `build`, `graph` and `status`.
import { access } from 'node:fs/promises';
import { RumError } from '../errors.js';
import { DigestCache, type Digest } from './digest.js';
import type { Action, EngineWarning, NodeState, StaleReason } from './events.js';
import { diffFields, fingerprint, type Fingerprint } from './key.js';
import type { AnyRule, NodeApi, Output } from './rule.js';
import type { StateStore } from './state.js';

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
  deps: string[]; // keyed and order-only, within the planned set
  output?: string;
}

export interface Plan {
  nodes: PlannedNode[]; // build order
  edges: [string, string][];
  /** Said once by whoever shows the plan or runs it (a salvaged state record). */
  warnings?: EngineWarning[];
}

export interface Engine<C> {
  ctx: C;
  rules: AnyRule<C>[];
  state: StateStore;
  digests: DigestCache;
  opts: PlanOptions;
}

/** Checks ids and edges, returns the rules needed for the targets in a stable build order. */
export function orderRules<C>(rules: AnyRule<C>[], targets?: string[]): AnyRule<C>[] {
  const byId = new Map<string, AnyRule<C>>();
  for (const r of rules) {
    if (byId.has(r.id)) throw new RumError('BUG', `two rules are named ${r.id}`);
    byId.set(r.id, r);
  }
  for (const r of rules)
    for (const d of [...r.deps, ...(r.after ?? [])])
      if (!byId.has(d)) throw new RumError('BUG', `rule ${r.id} depends on unknown rule ${d}`);
  for (const t of targets ?? [])
    if (!byId.has(t))
      throw new RumError('USAGE', `there is no target named ${t}`, `targets: ${[...byId.keys()].join(', ')}`);

  const order: AnyRule<C>[] = [];
  const mark = new Map<string, 'visiting' | 'done'>();
  const visit = (r: AnyRule<C>, path: string[]): void => {
    const m = mark.get(r.id);
    if (m === 'done') return;
    if (m === 'visiting') throw new RumError('BUG', `rules form a cycle: ${[...path, r.id].join(' -> ')}`);
    mark.set(r.id, 'visiting');
    for (const d of [...r.deps, ...(r.after ?? [])]) visit(byId.get(d)!, [...path, r.id]);
    mark.set(r.id, 'done');
    order.push(r);
  };
  for (const r of targets ? targets.map((t) => byId.get(t)!) : rules) visit(r, []);
  return order;
}

export function apiFor<C>(e: Engine<C>, rule: AnyRule<C>, signal: AbortSignal): NodeApi<C> {
  return {
    ctx: e.ctx,
    upstream: (id) => {
      const out = e.state.output(id);
      if (!out) throw new RumError('BUG', `${rule.id} read ${id}, which has no output yet`);
      return out;
    },
    previous: e.state.output(rule.id),
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
  rule: AnyRule<C>,
  inputs: Record<string, unknown>,
): Promise<Fingerprint | string> {
  const files: Record<string, Digest> = {};
  for (const [label, path] of Object.entries(rule.files?.(e.ctx) ?? {})) {
    try {
      files[label] = await e.digests.digest(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      return path;
    }
  }
  const upstream: Record<string, Digest> = {};
  for (const d of rule.deps) upstream[d] = e.state.get(d)?.output ?? ('' as Digest);
  return fingerprint(rule, inputs, files, upstream);
}

/**
 * Assess one node. `pending` names keyed dependencies that are stale in this plan and not built
 * yet (a dry run): their new output digest is unknown, so this node is stale tentatively.
 */
export async function assess<C>(
  e: Engine<C>,
  rule: AnyRule<C>,
  pending: string[],
  signal: AbortSignal,
): Promise<Assessment> {
  const inputs = await rule.inputs(e.ctx);
  const rec = e.state.get(rule.id);
  const stale = async (reason: StaleReason, fp?: Fingerprint, tentative = false): Promise<Assessment> => ({
    ...(await actionFor(e, rule, reason, rec !== undefined, signal)),
    fingerprint: fp,
    inputs,
    ...(tentative ? { tentative } : {}),
  });

  // No record: never built, or (a stateful artifact that is there all the same: a crash before
  // recording it, a damaged record) one to adopt as it is, never to make again.
  const unrecorded = async (): Promise<StaleReason> =>
    rule.kind === 'stateful' && (await exists(rule.output?.(e.ctx))) ? { type: 'unrecorded' } : { type: 'missing' };

  // In a dry run a pending upstream has no output yet; when executing, pending is always empty.
  if (e.opts.reset && rule.resettable && pending.length > 0) return stale({ type: 'reset' });
  if (!rec && pending.length > 0) return stale(await unrecorded());
  if (pending.length > 0) {
    // An input or recipe change is certain even while an upstream is pending: report it, not
    // the tentative upstream. (Its key is not final yet: the upstream's output is unknown.)
    const now = rec ? await fingerprintNow(e, rule, inputs) : undefined;
    const own = now && typeof now !== 'string' ? diffFields(rec!.fields, now.fields) : undefined;
    if (own && (own.type === 'input-changed' || own.type === 'recipe-changed')) return stale(own);
    return stale({ type: 'upstream-changed', nodes: pending }, undefined, true);
  }
  const fp = await fingerprintNow(e, rule, inputs);
  if (typeof fp === 'string') return stale(rec ? { type: 'check-failed', why: `${fp} is missing` } : { type: 'missing' });
  if (e.opts.reset && rule.resettable) return stale({ type: 'reset' }, fp);
  if (!rec) return stale(await unrecorded(), fp);
  if (fp.key !== rec.key) return stale(diffFields(rec.fields, fp.fields), fp);
  if (rule.check) {
    const c = await rule.check(apiFor(e, rule, signal));
    if (!c.ok && c.lost) return stale(e.opts.reset ? { type: 'reset' } : { type: 'lost', why: c.why }, fp);
    if (!c.ok) return stale({ type: 'check-failed', why: c.why }, fp);
  }
  return { state: 'fresh', action: 'none', fingerprint: fp, inputs };
}

async function actionFor<C>(
  e: Engine<C>,
  rule: AnyRule<C>,
  reason: StaleReason,
  existed: boolean,
  signal: AbortSignal,
): Promise<Assessment> {
  const verbs = rule.verbs ?? { build: 'build', rebuild: 'rebuild' };
  const rebuild = existed || reason.type === 'reset' ? verbs.rebuild : verbs.build;
  const keyChange = reason.type === 'input-changed' || reason.type === 'upstream-changed' || reason.type === 'recipe-changed';
  if (reason.type === 'unrecorded') return { state: 'stale', action: 'adopt', reason };
  if (rule.kind === 'stateful' && keyChange) return { state: 'kept', action: 'kept-needs-reset', reason };
  if (reason.type === 'lost') return { state: 'kept', action: 'kept-needs-reset', reason };
  if (rule.restartGuard && keyChange && rule.check) {
    // Only a live effect is guarded: a stopped domain is simply started with the new definition.
    const live = await rule.check(apiFor(e, rule, signal));
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
  const ordered = orderRules(e.rules, e.opts.targets);
  const inPlan = new Set(ordered.map((r) => r.id));
  const stale = new Set<string>();
  const nodes: PlannedNode[] = [];
  for (const rule of ordered) {
    const pending = rule.deps.filter((d) => stale.has(d));
    const a = await assess(e, rule, pending, signal);
    if (a.state === 'stale') stale.add(rule.id);
    const deps = [...rule.deps, ...(rule.after ?? [])].filter((d) => inPlan.has(d));
    nodes.push({ ...a, id: rule.id, rule: rule as AnyRule<unknown>, deps, output: rule.output?.(e.ctx) });
  }
  const edges = nodes.flatMap((n) => n.deps.map((d): [string, string] => [d, n.id]));
  const warnings: EngineWarning[] = e.state.damage ? [{ type: 'state-damaged', ...e.state.damage }] : [];
  return { nodes, edges, ...(warnings.length > 0 ? { warnings } : {}) };
}

async function exists(path: string | undefined): Promise<boolean> {
  return path !== undefined && (await access(path).then(() => true, () => false));
}

/** A plan changes something when any node would be built, or is drift kept on purpose. */
export function planChanges(plan: Plan): boolean {
  return plan.nodes.some((n) => n.action !== 'none');
}

export type { Output };
