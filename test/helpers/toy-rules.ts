// In-memory rules for engine tests: each "artifact" is a string in a map; builds are counted.
import { digestOf } from '../../src/graph/digest.js';
import type { DigestCache } from '../../src/graph/digest.js';
import { instantiate } from '../../src/graph/nodes.js';
import type { Engine, PlanOptions } from '../../src/graph/plan.js';
import { defineRule, type AnyRule } from '../../src/graph/rule.js';
import type { StateStore } from '../../src/graph/state.js';

/** An engine over one machine's rules, as a file without machines: node ids are rule ids. */
export function oneVm<C>(e: { ctx: C; rules: AnyRule<C>[]; state: StateStore; digests: DigestCache; opts: PlanOptions }): Engine<C> {
  return { nodes: instantiate(e.rules, [{ name: 'vm', ctx: e.ctx, state: e.state }], { qualify: false }), digests: e.digests, opts: e.opts };
}

export interface ToyCtx {
  /** A machine's name: builds are recorded as `name:id`. */
  name?: string;
  config: Record<string, string>;
  store: Map<string, string>;
  builds: string[];
  delayMs?: Record<string, number>;
  fail?: Set<string>;
  /** Called when a build starts (to kill the process mid-node, say). */
  onBuild?: (id: string) => void | Promise<void>;
  /** Called when a build has finished. */
  onBuilt?: (id: string) => void;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

/** A derived rule: output = f(config[field], upstream outputs). */
export function toy(
  id: string,
  opts: { deps?: string[]; field?: string; kind?: AnyRule<ToyCtx>['kind']; resettable?: boolean; transform?: (s: string) => string; shared?: boolean } = {},
): AnyRule<ToyCtx> {
  const deps = opts.deps ?? [];
  return defineRule<ToyCtx, Record<string, unknown>>({
    id,
    kind: opts.kind ?? 'derived',
    version: 1,
    deps: deps.map((id) => ({ id })),
    resettable: opts.resettable,
    ...(opts.shared ? { shareKey: (c: ToyCtx) => String(c.config[opts.field ?? ''] ?? '') } : {}),
    inputs: (c) => (opts.field ? { [opts.field]: c.config[opts.field] } : {}),
    build: async ({ ctx, inputs, signal }) => {
      ctx.builds.push(ctx.name ? `${ctx.name}:${id}` : id);
      await ctx.onBuild?.(id);
      if (ctx.delayMs?.[id]) await sleep(ctx.delayMs[id]!, signal);
      if (ctx.fail?.has(id)) throw new Error(`${id} exploded`);
      ctx.onBuilt?.(id);
      const parts = [String(inputs[opts.field ?? ''] ?? ''), ...deps.map((d) => ctx.store.get(d) ?? '')];
      const value = (opts.transform ?? ((s) => s))(`${id}(${parts.join(',')})`);
      ctx.store.set(id, value);
      return { digest: digestOf(value) };
    },
    check: async ({ ctx }) => (ctx.store.has(id) ? { ok: true } : { ok: false, why: `${id} is gone` }),
  });
}
