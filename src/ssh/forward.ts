// Owns: host ports that reach guest ports through the VM's SSH connection (nat mode; user mode
// has QEMU's own host forwards). One connection carries every forward; it is made again,
// within bounds, when the guest reboots.
import { createServer, type Server, type Socket } from 'node:net';
import { RumError } from '../errors.js';
import { backoff, pollUntil } from '../files/wait.js';
import type { SshSession } from './connect.js';

export interface Forward {
  bind: string;
  host: number;
  guest: number;
}

export type ForwardEvent =
  | { type: 'listening'; forward: Forward }
  | { type: 'connection'; forward: Forward }
  | { type: 'error'; forward: Forward; message: string }
  | { type: 'reconnecting'; attempt: number; why: string };

export interface Forwarder {
  close(): Promise<void>;
}

export async function startForwards(
  forwards: Forward[],
  connect: () => Promise<SshSession>,
  onEvent: (e: ForwardEvent) => void = () => undefined,
): Promise<Forwarder> {
  let session: SshSession | undefined;
  let connecting: Promise<SshSession> | undefined;
  // Connect lazily and again after a loss: bounded tries with backoff, so a rebooting guest is
  // waited for, a gone one is reported.
  const sessionNow = (): Promise<SshSession> => {
    if (session && !session.closed) return Promise.resolve(session);
    connecting ??= (async () => {
      let last: unknown;
      const tryConnect = ({ tries }: { tries: number }) =>
        connect().catch((err: Error) => {
          last = err;
          onEvent({ type: 'reconnecting', attempt: tries, why: err.message });
          return undefined;
        });
      const s = await pollUntil(tryConnect, { everyMs: (n) => backoff(n, 500, 5000), maxTries: 30, timeoutMs: 5 * 60_000 });
      if (!s) throw last;
      return (session = s);
    })().finally(() => (connecting = undefined));
    return connecting;
  };

  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  for (const f of forwards) {
    const server = createServer((sock) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
      onEvent({ type: 'connection', forward: f });
      sock.pause(); // hold the client's first bytes until the channel is open
      sessionNow()
        .then((s) => s.forwardOut(sock.remoteAddress ?? '127.0.0.1', sock.remotePort ?? 0, '127.0.0.1', f.guest))
        .then((ch) => {
          sock.pipe(ch).pipe(sock);
          ch.on('error', () => sock.destroy());
          sock.on('error', () => ch.destroy());
          sock.resume();
        })
        .catch((err: Error) => {
          onEvent({ type: 'error', forward: f, message: err.message });
          sock.destroy();
        });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          new RumError(
            'FAILED',
            `cannot listen on ${f.bind}:${f.host}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message}`,
            'change ports[].host in rum.yaml, or stop what uses the port',
          ),
        ),
      );
      server.listen(f.host, f.bind, () => resolve());
    }).catch(async (err) => {
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
      throw err;
    });
    servers.push(server);
    onEvent({ type: 'listening', forward: f });
  }
  return {
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
      await session?.close();
    },
  };
}
