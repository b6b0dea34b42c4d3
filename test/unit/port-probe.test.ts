// src/net/port-probe.ts: the kernel's answer to "does anything listen on 127.0.0.1:port", used by
// ssh-ready's check in user networking instead of a connection the guest's sshd would serve.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { listensOnLoopback } from '../../src/net/port-probe.js';

test('listensOnLoopback: a listening socket on 127.0.0.1 or any address is seen; a closed one is not', async () => {
  for (const host of ['127.0.0.1', '0.0.0.0']) {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, host, r));
    const { port } = server.address() as AddressInfo;
    assert.equal(await listensOnLoopback(port), true, host);
    await new Promise<void>((r) => server.close(() => r()));
    assert.equal(await listensOnLoopback(port), false, `${host} after close`);
  }
});
