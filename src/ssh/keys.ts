// Owns: the ed25519 key pairs rum makes (the VM's client key, the guest's host key), in OpenSSH
// format, and the known_hosts line that pins a host key.
import { readFile } from 'node:fs/promises';
import { writeAtomic } from '../files/atomic.js';

export interface KeyPair {
  private: string;
  public: string; // "ssh-ed25519 AAAA... comment"
}

export async function generateKeyPair(comment: string): Promise<KeyPair> {
  // ssh2 writes OpenSSH's own private key format, which ssh(1) and ssh2 both read.
  const { utils } = (await import('ssh2')).default;
  const k = utils.generateKeyPairSync('ed25519', { comment });
  return { private: k.private, public: k.public.trim() };
}

/** Private key 0600 (ssh refuses others), public 0644; each written atomically. */
export async function writeKeyPair(privPath: string, pubPath: string, k: KeyPair): Promise<void> {
  await writeAtomic(privPath, k.private.endsWith('\n') ? k.private : `${k.private}\n`, 0o600);
  await writeAtomic(pubPath, `${k.public}\n`, 0o644);
}

export async function readKeyPair(privPath: string, pubPath: string): Promise<KeyPair | undefined> {
  try {
    const [priv, pub] = await Promise.all([readFile(privPath, 'utf8'), readFile(pubPath, 'utf8')]);
    if (!priv.includes('BEGIN OPENSSH PRIVATE KEY') || !pub.startsWith('ssh-ed25519 ')) return undefined;
    return { private: priv, public: pub.trim() };
  } catch {
    return undefined;
  }
}

/** A known_hosts line: `[host]:port` form when the port is not 22, as OpenSSH writes it. */
export function knownHostsLine(hosts: string[], publicKey: string): string {
  const [type, blob] = publicKey.split(/\s+/);
  return `${hosts.join(',')} ${type} ${blob}\n`;
}
