// Owns: the persistent libvirt domain, defined from domain.xml. Never touches a domain of the
// same name that does not carry rum's mark for this rum.yaml.
import { RumError } from '../src/errors.js';
import { defineRule } from '../src/graph/rule.js';
import { domainFacts, forgetDomainFacts, virsh, type RumCtx } from './context.js';

/** Whose the domain of this VM's name is: nobody's (absent), this rum.yaml's, or someone else's:
 * another project's (`project` names its rum.yaml, as its own mark says) or not rum's at all. */
export type DomainOwner = { owner: 'absent' } | { owner: 'ours' } | { owner: 'other'; project?: string };

export async function domainOwner(ctx: Pick<RumCtx, 'config' | 'vm' | 'env'>): Promise<DomainOwner> {
  const xml = (await domainFacts(ctx)).inactiveXml;
  if (xml === undefined) return { owner: 'absent' };
  const { readOwnerMark } = await import('../src/libvirt/domain-xml.js');
  const mark = readOwnerMark(xml);
  if (mark && mark.configFile === ctx.config.file) return { owner: 'ours' };
  return mark ? { owner: 'other', project: mark.configFile } : { owner: 'other' };
}

/** The words for a domain that is not ours (`project` comes from its XML: escape it to print). */
export function notOurs(ctx: Pick<RumCtx, 'config'>, project: string | undefined): { message: string; hint: string } {
  return {
    message:
      `a libvirt domain named "${ctx.config.name}" exists on ${ctx.config.libvirt.uri} and is not this project's` +
      (project !== undefined ? ` (it belongs to ${project})` : ' (it was not made by rum)'),
    hint: 'rum never changes a domain it does not own: set a different `name:` in rum.yaml',
  };
}

/** The domain's owner mark, 'absent', or a refusal when it is not ours. */
export async function ownedDomain(ctx: RumCtx): Promise<'absent' | 'ours'> {
  const d = await domainOwner(ctx);
  if (d.owner === 'other') {
    const { message, hint } = notOurs(ctx, d.project);
    throw new RumError('LIBVIRT', message, hint);
  }
  return d.owner;
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
