// Owns: the persistent libvirt domain, defined from domain.xml. Never touches a domain of the
// same name that does not carry rum's mark for this rum.yaml.
import { RumError } from '../src/errors.js';
import { defineRule } from '../src/graph/rule.js';
import { domainFacts, forgetDomainFacts, virsh, type RumCtx } from './context.js';

/** The domain's owner mark, 'absent', or a refusal when it is not ours. */
export async function ownedDomain(ctx: RumCtx): Promise<'absent' | 'ours'> {
  const xml = (await domainFacts(ctx)).inactiveXml;
  if (xml === undefined) return 'absent';
  const { readOwnerMark } = await import('../src/libvirt/domain-xml.js');
  const mark = readOwnerMark(xml);
  if (!mark || mark.configFile !== ctx.config.file)
    throw new RumError(
      'LIBVIRT',
      `a libvirt domain named "${ctx.config.name}" exists on ${ctx.config.libvirt.uri} and is not this project's` +
        (mark ? ` (it belongs to ${mark.configFile})` : ' (it was not made by rum)'),
      'rum never changes a domain it does not own: set a different `name:` in rum.yaml',
    );
  return 'ours';
}

export const definedDomain = defineRule({
  id: 'defined-domain',
  kind: 'effect',
  version: 1,
  deps: ['domain-xml'],
  verbs: { build: 'define', rebuild: 'redefine' },
  inputs: (c: RumCtx) => ({ 'libvirt.uri': c.config.libvirt.uri }),
  build: async ({ ctx, upstream }) => {
    await ownedDomain(ctx);
    await virsh(ctx).define(ctx.vm.path('domainXml'));
    forgetDomainFacts(ctx);
    return { digest: upstream('domain-xml').digest };
  },
  check: async ({ ctx }) =>
    (await ownedDomain(ctx)) === 'ours' ? { ok: true } : { ok: false, why: `libvirt has no domain ${ctx.config.name}` },
});
