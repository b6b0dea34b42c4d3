// Owns: turning rule templates into the graph's nodes: one per rule and machine (`web/overlay`),
// or one per group of machines that share it (the base image), with their edges. A file of one
// machine keeps the plain rule ids (`overlay`), as before there were machines.
import { RumError } from '../errors.js';
import type { AnyRule, RuleRef } from './rule.js';
import type { StateStore } from './state.js';

/** One machine as the engine sees it: its name, the context its rules read, its state record. */
export interface Scope<C> {
  name: string;
  ctx: C;
  state: StateStore;
  /** --reset for this machine only (PlanOptions.reset: for all). */
  reset?: boolean;
}

export interface GraphNode<C> {
  id: string;
  rule: AnyRule<C>;
  /** The machines this node serves: one, or several for a shared node. */
  scopes: Scope<C>[];
  /** Where this node's record is read from: every scope's record holds it (a shared node is
   * recorded in each), so that each machine's record stands on its own. */
  primary: Scope<C>;
  /** Keyed dependencies by rule id, to node ids. */
  deps: Map<string, string>;
  /** Order-only dependencies, as node ids. */
  after: string[];
}

/**
 * The nodes for these machines. `after` adds order-only edges between nodes of different
 * machines (`web` starts once `db` answers): [before, after] node ids.
 */
export function instantiate<C>(rules: AnyRule<C>[], scopes: Scope<C>[], opts: { qualify: boolean; after?: [string, string][] }): GraphNode<C>[] {
  const byRule = new Map<string, AnyRule<C>>();
  for (const r of rules) {
    if (byRule.has(r.id)) throw new RumError('BUG', `two rules are named ${r.id}`);
    byRule.set(r.id, r);
  }
  const ref = (r: AnyRule<C>, d: RuleRef) => {
    if (!byRule.has(d.id)) throw new RumError('BUG', `rule ${r.id} depends on unknown rule ${d.id}`);
    return d.id;
  };
  // node id of (rule, machine)
  const where = new Map<string, string>();
  const nodes: GraphNode<C>[] = [];
  // Machine by machine, so plans list each machine's nodes together; a shared node comes with
  // the first machine it serves.
  const groupsOf = new Map<AnyRule<C>, Map<string, Scope<C>[]>>();
  for (const rule of rules) {
    const groups = new Map<string, Scope<C>[]>();
    for (const s of scopes) {
      if (rule.applies && !rule.applies(s.ctx)) continue;
      const key = rule.shareKey ? `shared:${rule.shareKey(s.ctx)}` : `own:${s.name}`;
      groups.set(key, [...(groups.get(key) ?? []), s]);
    }
    groupsOf.set(rule, groups);
  }
  for (const s of scopes) {
    for (const rule of rules) {
      const groups = groupsOf.get(rule)!;
      const members = [...groups.values()].find((g) => g[0] === s);
      if (!members) continue;
      const id = !opts.qualify
        ? rule.id
        : rule.shareKey
          ? groups.size === 1 ? rule.id : `${rule.id}[${members.map((m) => m.name).join(',')}]`
          : `${s.name}/${rule.id}`;
      // A shared node reads its record from a machine that has one, if any does.
      const primary = members.find((m) => m.state.get(rule.id)) ?? members[0]!;
      nodes.push({ id, rule, scopes: members, primary, deps: new Map(), after: [] });
      for (const m of members) where.set(`${rule.id}\0${m.name}`, id);
    }
  }
  for (const n of nodes) {
    const m = n.primary.name;
    for (const d of n.rule.deps) {
      const id = where.get(`${ref(n.rule, d)}\0${m}`);
      if (id !== undefined) n.deps.set(d.id, id);
    }
    for (const d of n.rule.after ?? []) {
      const id = where.get(`${ref(n.rule, d)}\0${m}`);
      if (id !== undefined) n.after.push(id);
    }
  }
  const byId = new Map(nodes.map((n) => [n.id, n]));
  for (const [before, later] of opts.after ?? []) {
    if (!byId.has(before) || !byId.has(later)) throw new RumError('BUG', `no node ${byId.has(before) ? later : before}`);
    byId.get(later)!.after.push(before);
  }
  return nodes;
}

/** Every dependency of a node, keyed and order-only. */
export const allDeps = <C>(n: GraphNode<C>): string[] => [...n.deps.values(), ...n.after];

/** The nodes needed for the targets (default: all), checked for cycles, in a stable build order. */
export function orderNodes<C>(nodes: GraphNode<C>[], targets?: string[]): GraphNode<C>[] {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  for (const t of targets ?? [])
    if (!byId.has(t)) throw new RumError('USAGE', `there is no target named ${t}`, `targets: ${[...byId.keys()].join(', ')}`);
  const order: GraphNode<C>[] = [];
  const mark = new Map<string, 'visiting' | 'done'>();
  const visit = (n: GraphNode<C>, path: string[]): void => {
    const m = mark.get(n.id);
    if (m === 'done') return;
    if (m === 'visiting') throw new RumError('BUG', `nodes form a cycle: ${[...path, n.id].join(' -> ')}`);
    mark.set(n.id, 'visiting');
    for (const d of allDeps(n)) visit(byId.get(d)!, [...path, n.id]);
    mark.set(n.id, 'done');
    order.push(n);
  };
  for (const n of targets ? targets.map((t) => byId.get(t)!) : nodes) visit(n, []);
  return order;
}
