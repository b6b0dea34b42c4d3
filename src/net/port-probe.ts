// Owns: whether something answers, or listens, on a TCP port. Knows nothing of SSH or the graph.
import { readFile } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';

/** Whether a TCP connection to host:port is accepted within timeoutMs (it is closed at once). */
export function tcpOpen(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host, port, timeout: timeoutMs });
    const done = (ok: boolean) => (s.destroy(), resolve(ok));
    s.once('connect', () => done(true));
    s.once('timeout', () => done(false));
    s.once('error', () => done(false));
  });
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
