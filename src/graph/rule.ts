// Owns: what a rule is. A rule only declares: id, kind, deps, the inputs it reads, a recipe
// version, build() and check(). The engine (plan.ts, execute.ts) decides freshness and records.
// A rule is a template: the engine makes one node of it per machine (nodes.ts), or one per group
// of machines that share it.
import type { Digest } from './digest.js';
import type { Action } from './events.js';

/**
 * - derived: a pure function of its inputs; rebuilt whenever its key changes.
 * - fetched: expensive to obtain, verified, shared by VMs (base image).
 * - stateful: created once, then owned by the guest (overlay, keys): a key change is reported,
 *   never applied; only --reset (if resettable) or destroy rebuilds it.
 * - effect: a fact in the outside world (defined/running domain); check() asks every run.
 */
export type NodeKind = 'derived' | 'fetched' | 'stateful' | 'effect';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

/** What a build produced: a digest for dependents' keys, and small facts they may read (an
 * object, so that a record holding anything else is known to be damaged: state-schema.ts). */
export interface Output<D extends object | undefined = JsonObject | undefined> {
  digest: Digest;
  data?: D;
}

/** An output whose data the rule always writes: what `upstream(rule)` hands its dependents. */
export type Produced<D extends object | undefined> = D extends object ? { digest: Digest; data: D } : { digest: Digest };

/** `lost`: a stateful artifact is gone, and the guest's data or trust with it: never made again
 * without --reset (a fresh first boot), which the plan asks for instead. */
export type Check = { ok: true } | { ok: false; why: string; lost?: boolean; action?: Action };

/** A dependency, named by the rule itself: the compiler checks the edge and the data's type. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type RuleRef<D extends object | undefined = any> = { readonly id: string; readonly __data?: D };

export interface NodeApi<C> {
  ctx: C;
  /** The recorded output of a dependency (keyed or order-only); built before this node runs. */
  upstream<D extends object | undefined>(rule: RuleRef<D>): Produced<D>;
  /** This node's previous output, if any (e.g. to adopt an existing overlay). Its data is what
   * the record holds: check it before trusting it (a damaged record keeps only its shape). */
  previous: Output | undefined;
  signal: AbortSignal;
  /** A file's digest through the run's stat cache: an unchanged file is not read again. */
  digestFile(path: string): Promise<Digest>;
  progress(message: string, fraction?: number): void;
  notice(message: string): void;
}

export interface Rule<C = unknown, I extends Record<string, unknown> = Record<string, unknown>, D extends object | undefined = undefined> {
  id: string;
  kind: NodeKind;
  /** Bump when the same inputs should now give a different output. */
  version: number;
  /** Dependencies whose output digests enter this node's key. */
  deps: readonly RuleRef[];
  /** Dependencies that must run first but whose output this node does not read. */
  after?: readonly RuleRef[];
  /** Whether the machine has this node at all (default: yes). A dependency a machine does not
   * have is left out of its dependents' keys and edges. */
  applies?(ctx: C): boolean;
  /** Machines for which this returns the same text share one node (the base image); absent:
   * one node per machine. */
  shareKey?(ctx: C): string;
  /** Exactly what the node reads, named by config path (e.g. 'provision.packages'). */
  inputs(ctx: C): I | Promise<I>;
  /** Files the node reads, by label: the engine digests them (stat-cached). */
  files?(ctx: C): Record<string, string>;
  /** The artifact's path, for `graph --format json` and messages. */
  output?(ctx: C): string | undefined;
  build(api: NodeApi<C> & { inputs: I; action: Action }): Promise<{ digest: Digest; data?: D }>;
  /** Is the real thing still there and intact? Asked before a fresh node is trusted. */
  check?(api: NodeApi<C>): Promise<Check>;
  /** --reset invalidates it (overlay and seed). */
  resettable?: boolean;
  /** Effects: verbs for a first build and a rebuild (e.g. define/redefine, start/restart). */
  verbs?: { build: Action; rebuild: Action };
  /** Effects: a key change while check() passes (the guest runs) waits for --restart. */
  restartGuard?: boolean;
  readonly __data?: D;
}

export function defineRule<C, I extends Record<string, unknown>, D extends object | undefined = undefined>(rule: Rule<C, I, D>): Rule<C, I, D> {
  return rule;
}

// A rule set mixes rules with different input and output types; the engine only sees them
// through this.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyRule<C> = Rule<C, any, any>;
