// Owns: the ed25519 key pairs rum makes (the VM's client key, the guest's host key), in OpenSSH
// format, and the known_hosts line that pins a host key.
import { readFile } from 'node:fs/promises';
import { RumError } from '../errors.js';
import { writeAtomic } from '../files/atomic.js';

export interface KeyPair {
  private: string;
  public: string; // "ssh-ed25519 AAAA... comment"
}

export async function generateKeyPair(comment: string): Promise<KeyPair> {
  // ssh2 writes OpenSSH's own private key format, which ssh(1) and ssh2 both read...
  const { utils } = (await import('ssh2')).default;
  return generateValidEd25519(utils, comment);
}

type Ssh2Utils = (typeof import('ssh2'))['utils'];

/**
 * ...except that ssh2 1.17 drops a leading zero byte of the ed25519 public key (a 31-byte blob)
 * in about one key of a few hundred, and then neither ssh2 nor OpenSSH can load the key
 * (measured: 7 of 3000). So a key is kept only once it parses back with a 32-byte public key.
 * Bounded: twenty bad keys in a row would take a broken library, not bad luck.
 */
export function generateValidEd25519(utils: Ssh2Utils, comment: string): KeyPair {
  for (let attempt = 0; attempt < 20; attempt++) {
    const k = utils.generateKeyPairSync('ed25519', { comment });
    const blob = Buffer.from(k.public.trim().split(/\s+/)[1] ?? '', 'base64');
    // The blob: uint32 length + "ssh-ed25519" (11 bytes), then uint32 length + 32 key bytes.
    if (!(utils.parseKey(k.private) instanceof Error) && blob.length === 4 + 11 + 4 + 32) {
      return { private: k.private, public: k.public.trim() };
    }
  }
  throw new RumError('BUG', 'could not generate a valid ed25519 key pair in 20 attempts', 'please report it with your ssh2 version');
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
