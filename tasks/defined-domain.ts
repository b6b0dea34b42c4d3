// Owns: the persistent libvirt domain, defined from domain.xml. Never touches a domain of the
// same name that does not carry rum's mark for this rum.yaml (Machine.define refuses it).
import { defineRule } from '../src/graph/rule.js';
import type { RumCtx } from './context.js';
import { domainXml } from './domain-xml.js';
import { overlay } from './overlay.js';
import { layersInput } from './snapshots.js';

export const definedDomain = defineRule({
  id: 'defined-domain',
  kind: 'effect',
  version: 1,
  deps: [domainXml],
  after: [overlay], // see domain-xml: the layers may change within the run
  verbs: { build: 'define', rebuild: 'redefine' },
  // The layers: a snapshot moves the disk onto a new chain, which the definition must name (and
  // which a snapshot of a running guest leaves libvirt's definition pointing past).
  inputs: async (c: RumCtx) => ({ 'libvirt.uri': c.config.libvirt.uri, ...(await layersInput(c)) }),
  build: async ({ ctx, upstream }) => {
    await ctx.machine.define(ctx.vm.path('domainXml'));
    return { digest: upstream(domainXml).digest };
  },
  check: async ({ ctx }) =>
    (await ctx.machine.owned()) === 'ours' ? { ok: true } : { ok: false, why: `libvirt has no domain ${ctx.machine.domain}` },
});
