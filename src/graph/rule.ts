// Owns: what a rule is. A rule only declares: id, kind, deps, the inputs it reads, a recipe
// version, build() and check(). The engine (plan.ts, execute.ts) decides freshness and records.
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

/** What a build produced: a digest for dependents' keys, and small facts they may read (an
 * object, so that a record holding anything else is known to be damaged: state-schema.ts). */
export interface Output {
  digest: Digest;
  data?: { [k: string]: Json };
}

/** `lost`: a stateful artifact is gone, and the guest's data or trust with it: never made again
 * without --reset (a fresh first boot), which the plan asks for instead. */
export type Check = { ok: true } | { ok: false; why: string; lost?: boolean };

export interface NodeApi<C> {
  ctx: C;
  /** The recorded output of a dependency (keyed or order-only); built before this node runs. */
  upstream(id: string): Output;
  /** This node's previous output, if any (e.g. to adopt an existing overlay). */
  previous: Output | undefined;
  signal: AbortSignal;
  /** A file's digest through the run's stat cache: an unchanged file is not read again. */
  digestFile(path: string): Promise<Digest>;
  progress(message: string, fraction?: number): void;
  notice(message: string): void;
}

export interface Rule<C = unknown, I extends Record<string, unknown> = Record<string, unknown>> {
  id: string;
  kind: NodeKind;
  /** Bump when the same inputs should now give a different output. */
  version: number;
  /** Dependencies whose output digests enter this node's key. */
  deps: readonly string[];
  /** Dependencies that must run first but whose output this node does not read. */
  after?: readonly string[];
  /** Exactly what the node reads, named by config path (e.g. 'provision.packages'). */
  inputs(ctx: C): I | Promise<I>;
  /** Files the node reads, by label: the engine digests them (stat-cached). */
  files?(ctx: C): Record<string, string>;
  /** The artifact's path, for `graph --format json` and messages. */
  output?(ctx: C): string | undefined;
  build(api: NodeApi<C> & { inputs: I; action: Action }): Promise<Output>;
  /** Is the real thing still there and intact? Asked before a fresh node is trusted. */
  check?(api: NodeApi<C>): Promise<Check>;
  /** --reset invalidates it (overlay and seed). */
  resettable?: boolean;
  /** Effects: verbs for a first build and a rebuild (e.g. define/redefine, start/restart). */
  verbs?: { build: Action; rebuild: Action };
  /** Effects: a key change while check() passes (the guest runs) waits for --restart. */
  restartGuard?: boolean;
}

export function defineRule<C, I extends Record<string, unknown>>(rule: Rule<C, I>): Rule<C, I> {
  return rule;
}

// A rule set mixes rules with different input types; the engine only sees them through this.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyRule<C> = Rule<C, any>;
