// Owns: the per-VM known_hosts file that lets OpenSSH check the guest's pinned host key.
// Not: the key itself (keys.ts) or the ssh options that point at this file (openssh.ts).
import { writeAtomic } from '../files/atomic.js';
import { RumError } from '../errors.js';
import { parseHostKey } from './connect.js';
import { knownHostsLine } from './keys.js';

export interface KnownHostsEntry {
  host: string; // e.g. 127.0.0.1 (user networking) or the guest's DHCP address
  port: number;
  alias: string; // e.g. rum-<name>: what HostKeyAlias makes OpenSSH look up, whatever the address
  hostKey: string; // "ssh-ed25519 AAAA... [comment]"
}

/**
 * Two lines for one key: `[host]:port` (or `host` on 22), as OpenSSH itself writes, and the alias.
 * With HostKeyAlias ssh looks up the alias alone, so the pin survives a change of address or port.
 */
export function knownHostsText(e: KnownHostsEntry): string {
  parseHostKey(e.hostKey); // only an ed25519 key is ever pinned
  checkName('host', e.host, /^(?:[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+)$/);
  checkName('alias', e.alias, /^[A-Za-z0-9._-]+$/);
  if (!Number.isInteger(e.port) || e.port < 1 || e.port > 65535) {
    throw new RumError('BUG', `known_hosts: port ${e.port} is not a TCP port`);
  }
  const address = e.port === 22 ? e.host : `[${e.host}]:${e.port}`;
  return knownHostsLine([address], e.hostKey) + knownHostsLine([e.alias], e.hostKey);
}

/** Written atomically: ssh never reads half a file. 0644: it holds only a public key. */
export async function writeKnownHosts(path: string, e: KnownHostsEntry): Promise<void> {
  await writeAtomic(path, knownHostsText(e), 0o644);
}

// A pattern character (`*?!,`), a space or a newline would change what the line matches.
function checkName(what: string, value: string, allowed: RegExp): void {
  if (!allowed.test(value) || value.startsWith('-')) {
    throw new RumError('BUG', `known_hosts: ${what} ${JSON.stringify(value)} cannot be written safely`);
  }
}
