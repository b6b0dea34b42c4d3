// Owns: the libvirt domain's UUID. Its own module because node:crypto costs every command that
// loads it, and domain-xml.ts is loaded by every plan on a defined VM (reading the owner mark).
import { createHash } from 'node:crypto';

/** The domain's UUID: stable for this project and name, so redefining keeps the same domain. */
export function domainUuid(configFile: string, name: string): string {
  const h = createHash('sha256').update(`rum:${configFile}:${name}`).digest('hex');
  // RFC 4122 shape: version 8 (custom), variant 10.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
