// Owns: the host port forwarded to the guest's sshd under user-mode networking (127.0.0.1 only).
// Chosen once and kept, so ssh-config and known_hosts stay valid across restarts.
import { createServer } from 'node:net';
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import type { RumCtx } from './context.js';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export const sshPort = defineRule({
  id: 'ssh-port',
  kind: 'derived',
  version: 1,
  deps: [],
  inputs: (c: RumCtx) => ({ 'network.mode': c.config.network.mode }),
  build: async ({ inputs, previous }) => {
    if (inputs['network.mode'] !== 'user') return { digest: digestOf('port:22'), data: { port: 22 } };
    const kept = (previous?.data as { port?: number } | undefined)?.port;
    const port = kept && kept !== 22 ? kept : await freePort();
    return { digest: digestOf(`port:${port}`), data: { port } };
  },
});
