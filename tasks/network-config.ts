// Owns: the NoCloud network-config of a machine on its project's network: DHCP plus the
// network's DNS domain to search, so machines reach each other by their short names. Other
// machines have none: cloud-init's own fallback (DHCP on the first NIC) serves them.
import { writeAtomic } from '../src/files/atomic.js';
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import { onProjectNetwork } from '../src/machine/network.js';
import { fileExists } from './checks.js';
import type { RumCtx } from './context.js';

export const networkConfig = defineRule({
  id: 'network-config',
  kind: 'derived',
  version: 1,
  deps: [],
  applies: (c: RumCtx) => onProjectNetwork(c.project, c.config),
  inputs: (c: RumCtx) => ({ mac: c.machine.mac, domain: `${c.project.name}.rum.internal` }),
  output: ({ vm }) => vm.path('networkConfig'),
  check: ({ ctx: { vm } }) => fileExists(vm.path('networkConfig')),
  build: async ({ ctx, inputs }) => {
    const { networkConfigDocument } = await import('../src/cloudinit/documents.js'); // loads yaml
    const text = networkConfigDocument({ mac: inputs.mac, searchDomain: inputs.domain });
    await writeAtomic(ctx.vm.path('networkConfig'), text);
    return { digest: digestOf(text) };
  },
});
