// `rum graph`: the VM's build graph with each node's state, as text, dot, mermaid or JSON.
import { usage } from '../program.js';
import { dot, mermaid, textTree } from '../../graph/render.js';
import { Output, planJson } from '../output.js';
import { planFor, subjectOf, type CommonOptions } from './common.js';

export async function graph(opts: CommonOptions & { format?: string }): Promise<number> {
  const format = opts.json ? 'json' : (opts.format ?? 'text');
  if (!['text', 'dot', 'mermaid', 'json'].includes(format)) usage(`unknown graph format "${format}"`, 'use --format text, dot, mermaid or json');
  const { o, machines, plan } = await planFor(opts, {});
  await (await import('../../machine/snapshots.js')).noteLayers(plan, machines);
  await (await import('../../machine/layer-builder.js')).noteLayerCache(plan);
  const name = subjectOf(o);
  const out = new Output({ json: format === 'json' });
  if (format === 'json') out.data(planJson(plan, name));
  else out.out(format === 'dot' ? dot(plan) : format === 'mermaid' ? mermaid(plan) : textTree(plan));
  return 0;
}
