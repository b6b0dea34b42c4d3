// Owns: how rum.yaml's mounts become guest mounts: the transport each uses (auto picks virtiofs
// when it can work, else 9p) and the tag that joins the libvirt device to the fstab line.
import { digestOf } from '../graph/digest.js';
import { virtiofsdPath } from '../libvirt/caps.js';
import { isSessionUri } from '../config/rules.js';
import type { Config } from '../config/schema.js';
import type { GuestMount } from '../cloudinit/documents.js';

export interface ResolvedMount extends GuestMount {
  source: string; // absolute host path
  why?: string; // why auto chose 9p
}

export function resolveMounts(c: Config, env = process.env): ResolvedMount[] {
  const session = isSessionUri(c.libvirt.uri);
  const virtiofsd = virtiofsdPath(env);
  return c.mounts.map((m) => {
    let type: 'virtiofs' | '9p' = m.type === 'auto' ? 'virtiofs' : m.type;
    let why: string | undefined;
    if (m.type === 'auto' && session) [type, why] = ['9p', 'libvirt does not support virtiofs in session mode'];
    else if (m.type === 'auto' && !virtiofsd) [type, why] = ['9p', 'no virtiofsd found (apt install virtiofsd)'];
    // libvirt before 11 refuses read-only virtiofs; 9p enforces read-only on the host side.
    else if (m.type === 'auto' && m.readonly) [type, why] = ['9p', 'read-only is enforced by the host only with 9p here'];
    // The tag is named by the target, so reordering mounts changes nothing in the guest.
    return { tag: `rum-${digestOf(m.target).slice(0, 12)}`, target: m.target, source: m.hostPath, type, readonly: m.readonly, ...(why ? { why } : {}) };
  });
}

/** The guest side only: what user-data reads. */
export function guestMounts(c: Config): GuestMount[] {
  return resolveMounts(c).map(({ tag, target, type, readonly }) => ({ tag, target, type, readonly }));
}
