// Owns: what every rum rule reads: the loaded config, the VM directory, the run's options and
// the instance generation. Infrastructure is imported lazily by the rules that use it.
import type { Config } from '../src/config/schema.js';
import type { VmDir } from '../src/paths.js';
import { Virsh, type DomainState } from '../src/libvirt/virsh.js';

export interface RumCtx {
  config: Config;
  vm: VmDir;
  env: NodeJS.ProcessEnv;
  /** Bumped by --reset; the guest's instance-id comes from it. */
  generation: number;
}

/** One virsh wrapper per URI per run. Loaded with this module: an existing VM's plan asks
 * libvirt first thing, and an import hop there would delay the question. */
const virshes = new Map<string, Virsh>();
export function virsh(ctx: Pick<RumCtx, 'config'>): Virsh {
  const uri = ctx.config.libvirt.uri;
  let v = virshes.get(uri);
  if (!v) {
    v = new Virsh(uri);
    virshes.set(uri, v);
  }
  return v;
}

/** The guest's MAC: stable per VM name, in QEMU's locally administered 52:54:00 range. */
export function macFor(name: string, digest: (s: string) => string): string {
  const h = digest(`mac:${name}`);
  return `52:54:00:${h.slice(0, 2)}:${h.slice(2, 4)}:${h.slice(4, 6)}`;
}

export interface DomainFacts {
  state: DomainState | undefined; // undefined: no such domain
  inactiveXml: string | undefined;
}

// One look at libvirt per run, shared by every check that asks about the domain, and kept by the
// VM's directory object, so a caller may start it before the run's context exists (it then
// overlaps the rest of start-up). Builds that change the domain forget it.
const facts = new WeakMap<RumCtx['vm'], Promise<DomainFacts>>();
export function domainFacts(ctx: Pick<RumCtx, 'config' | 'vm' | 'env'>): Promise<DomainFacts> {
  let f = facts.get(ctx.vm);
  if (!f) {
    const p = virsh(ctx).domainSnapshot(ctx.config.name);
    facts.set(ctx.vm, p);
    p.catch(() => {
      if (facts.get(ctx.vm) === p) facts.delete(ctx.vm);
    });
    f = p;
  }
  return f;
}
export function forgetDomainFacts(ctx: Pick<RumCtx, 'vm'>): void {
  facts.delete(ctx.vm);
}
