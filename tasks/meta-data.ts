// Owns: the NoCloud meta-data document. The instance-id changes only with --reset, so editing
// rum.yaml never makes cloud-init redo first-boot work behind the user's back.
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import { writeAtomic } from '../src/files/atomic.js';
import { fileExists } from './checks.js';
import type { RumCtx } from './context.js';

export const metaData = defineRule({
  id: 'meta-data',
  kind: 'derived',
  version: 2, // 2: written as YAML 1.1, as cloud-init reads it
  deps: [],
  inputs: (c: RumCtx) => ({ 'instance-id': `rum-${c.config.name}-${c.generation}`, 'network.hostname': c.config.network.hostname }),
  output: ({ vm }) => vm.path('metaData'),
  check: ({ ctx: { vm } }) => fileExists(vm.path('metaData')),
  build: async ({ ctx, inputs }) => {
    const { metaDataDocument } = await import('../src/cloudinit/documents.js'); // loads yaml
    const text = metaDataDocument({ instanceId: inputs['instance-id'], hostname: inputs['network.hostname'] });
    await writeAtomic(ctx.vm.path('metaData'), text);
    return { digest: digestOf(text) };
  },
});
