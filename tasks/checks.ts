// Checks shared by rules whose artifact is a file in the VM directory.
import { access, readFile } from 'node:fs/promises';
import type { Check } from '../src/graph/rule.js';

export async function fileExists(path: string): Promise<Check> {
  try {
    await access(path);
    return { ok: true };
  } catch {
    return { ok: false, why: `${path} is missing` };
  }
}

/**
 * Whether a TCP socket listens on 127.0.0.1:port (or on any address) in this network namespace,
 * asked of the kernel (/proc/net/tcp) without connecting; undefined when that cannot be read.
 */
export async function listensOnLoopback(port: number): Promise<boolean | undefined> {
  let table: string;
  try {
    table = await readFile('/proc/net/tcp', 'utf8');
  } catch {
    return undefined;
  }
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  // "sl local_address rem_address st ...": addresses are hex, the IPv4 one little-endian; 0A is LISTEN.
  return table.split('\n').some((line) => {
    const [, local, , st] = line.trim().split(/\s+/);
    return st === '0A' && (local === `0100007F:${hexPort}` || local === `00000000:${hexPort}`);
  });
}
