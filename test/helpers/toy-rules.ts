// In-memory rules for engine tests: each "artifact" is a string in a map; builds are counted.
import { digestOf } from '../../src/graph/digest.js';
import { defineRule, type AnyRule, type Output } from '../../src/graph/rule.js';

export interface ToyCtx {
  config: Record<string, string>;
  store: Map<string, string>;
  builds: string[];
  delayMs?: Record<string, number>;
  fail?: Set<string>;
  /** Called when a build starts (to kill the process mid-node, say). */
  onBuild?: (id: string) => void | Promise<void>;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

/** A derived rule: output = f(config[field], upstream outputs). */
export function toy(
  id: string,
  opts: { deps?: string[]; field?: string; kind?: AnyRule<ToyCtx>['kind']; resettable?: boolean; transform?: (s: string) => string } = {},
): AnyRule<ToyCtx> {
  const deps = opts.deps ?? [];
  return defineRule<ToyCtx, Record<string, unknown>>({
    id,
    kind: opts.kind ?? 'derived',
    version: 1,
    deps,
    resettable: opts.resettable,
    inputs: (c) => (opts.field ? { [opts.field]: c.config[opts.field] } : {}),
    build: async ({ ctx, inputs, upstream, signal }): Promise<Output> => {
      ctx.builds.push(id);
      await ctx.onBuild?.(id);
      if (ctx.delayMs?.[id]) await sleep(ctx.delayMs[id]!, signal);
      if (ctx.fail?.has(id)) throw new Error(`${id} exploded`);
      const parts = [String(inputs[opts.field ?? ''] ?? ''), ...deps.map((d) => ctx.store.get(d) ?? '')];
      const value = (opts.transform ?? ((s) => s))(`${id}(${parts.join(',')})`);
      ctx.store.set(id, value);
      return { digest: digestOf(value) };
    },
    check: async ({ ctx }) => (ctx.store.has(id) ? { ok: true } : { ok: false, why: `${id} is gone` }),
  });
}
