// Owns: the host port forwarded to the guest's sshd under user-mode networking (127.0.0.1 only).
// Chosen once and kept, so ssh-config and known_hosts stay valid across restarts; never one of
// the host ports rum.yaml forwards itself, which QEMU would refuse to forward twice.
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { RumError } from '../src/errors.js';
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import type { RumCtx } from './context.js';

/** The guest's SSH port as the host reaches it (user networking), or 22 (nat). */
export type SshPort = { port: number };

/** A port the kernel chose as free on 127.0.0.1, held until closed. */
export interface HeldPort {
  port: number;
  close(): Promise<void>;
}

function holdFreePort(): Promise<HeldPort> {
  return new Promise((resolve, reject) => {
    const srv: Server = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      resolve({ port, close: () => new Promise<void>((done) => srv.close(() => done())) });
    });
  });
}

/**
 * A free 127.0.0.1 port that is not in `avoid`. An offered port from `avoid` stays held until
 * the choice is made, so the kernel cannot offer it again: at most avoid.size + 1 tries. The
 * schema caps ports: far below the kernel's ephemeral range, so rum.yaml alone cannot leave
 * none; a host that has none left is told so.
 */
export async function freePortAvoiding(avoid: ReadonlySet<number>, hold: () => Promise<HeldPort> = holdFreePort): Promise<number> {
  const held: HeldPort[] = [];
  try {
    for (let tries = 0; tries <= avoid.size; tries++) {
      let offer: HeldPort;
      try {
        offer = await hold();
      } catch (err) {
        throw noPort(avoid.size, err);
      }
      held.push(offer);
      if (!avoid.has(offer.port)) return offer.port;
    }
    throw noPort(avoid.size);
  } finally {
    await Promise.all(held.map((h) => h.close()));
  }
}

function noPort(forwarded: number, cause?: unknown): RumError {
  return new RumError(
    'FAILED',
    `no free port on 127.0.0.1 for the guest's SSH${forwarded > 0 ? ` besides the ${forwarded} that ports: forwards` : ''}`,
    'free some ports, or widen the range in /proc/sys/net/ipv4/ip_local_port_range; or use network.mode: nat',
    cause === undefined ? undefined : { cause },
  );
}

/** The SSH port for this build: the kept one while it is still free of ports:, else a new one. */
export async function sshPortFor(hostPorts: readonly number[], kept: unknown, hold?: () => Promise<HeldPort>): Promise<number> {
  const taken = new Set(hostPorts);
  // 22: nat mode's answer, the guest's own port, not a host port rum chose.
  if (typeof kept === 'number' && Number.isInteger(kept) && kept > 0 && kept !== 22 && !taken.has(kept)) return kept;
  return freePortAvoiding(taken, hold);
}

/** The SSH forward in the domain XML rum last wrote, if any (see src/libvirt/domain-xml.ts). */
async function definedSshPort(ctx: RumCtx): Promise<number | undefined> {
  const xml = await readFile(ctx.vm.path('domainXml'), 'utf8').catch(() => '');
  const m = /hostfwd=tcp:127\.0\.0\.1:(\d{1,5})-:22(?=[,'"<])/.exec(xml);
  return m ? Number(m[1]) : undefined;
}

export const sshPort = defineRule({
  id: 'ssh-port',
  kind: 'derived',
  version: 2, // 2: never a host port that ports: forwards
  deps: [],
  inputs: (c: RumCtx) => {
    const user = c.config.network.mode === 'user';
    return {
      'network.mode': c.config.network.mode,
      // The host ports rum.yaml forwards (any address, either protocol): the SSH port avoids them.
      // Only user networking forwards through QEMU beside the SSH port.
      ports: user ? [...new Set(c.config.ports.map((p) => p.host))].sort((a, b) => a - b) : [],
    };
  },
  build: async ({ ctx, inputs, previous }) => {
    if (inputs['network.mode'] !== 'user') return { digest: digestOf('port:22'), data: { port: 22 } as SshPort };
    // With its record lost, the port the defined domain forwards is still the guest's way in.
    const kept = (previous?.data as { port?: unknown } | undefined)?.port ?? (await definedSshPort(ctx));
    const port = await sshPortFor(inputs.ports, kept);
    return { digest: digestOf(`port:${port}`), data: { port } as SshPort };
  },
});
