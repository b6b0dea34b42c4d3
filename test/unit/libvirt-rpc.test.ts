// The libvirt socket client's way out: whatever goes wrong on the socket, it answers "not this
// way" (undefined) within its time limit, and virsh is asked instead. Fake daemons on a session
// socket path under a temporary XDG_RUNTIME_DIR; the real daemons are in test/e2e/libvirt-rpc.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { localSockets, rpcSnapshot } from '../../src/libvirt/rpc.js';
import { reply, word, xdrString } from '../helpers/fake-libvirtd.js';

async function fakeDaemon(t: test.TestContext, onData: (sock: Socket, packet: Buffer) => void): Promise<NodeJS.ProcessEnv> {
  const dir = mkdtempSync(join(tmpdir(), 'rum-rpc-'));
  mkdirSync(join(dir, 'libvirt'));
  const server: Server = createServer((sock) => sock.on('data', (b) => onData(sock, b)));
  await new Promise<void>((r) => server.listen(join(dir, 'libvirt', 'libvirt-sock'), r));
  t.after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { XDG_RUNTIME_DIR: dir };
}

test('which sockets a URI reaches: plain local qemu URIs only', () => {
  assert.deepEqual(localSockets('qemu:///system', {}), { paths: ['/run/libvirt/virtqemud-sock-ro', '/run/libvirt/libvirt-sock-ro'], readonly: true });
  assert.deepEqual(localSockets('qemu:///session', { XDG_RUNTIME_DIR: '/run/user/7' }, 7), {
    paths: ['/run/user/7/libvirt/virtqemud-sock', '/run/user/7/libvirt/libvirt-sock'],
    readonly: false,
  });
  assert.equal(localSockets('qemu:///session', { XDG_CACHE_HOME: '/c' }, 7)?.paths[1], '/c/libvirt/libvirt-sock');
  assert.equal(localSockets('qemu:///session', { HOME: '/home/u' }, 7)?.paths[1], '/home/u/.cache/libvirt/libvirt-sock');
  // root's session URI is the system daemon, for libvirt: virsh knows that way.
  assert.equal(localSockets('qemu:///session', { XDG_RUNTIME_DIR: '/run/user/0' }, 0), undefined);
  for (const uri of ['qemu+ssh://host/system', 'qemu+unix:///system?socket=/x', 'test:///default', 'qemu:///system?mode=legacy'])
    assert.equal(localSockets(uri, {}, 7), undefined, uri);
});

test('no daemon on the socket: undefined, at once', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rum-rpc-'));
  try {
    assert.equal(await rpcSnapshot('qemu:///session', 'x', { env: { XDG_RUNTIME_DIR: dir }, euid: 7 }), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a daemon that never answers: undefined after the time limit', async (t) => {
  const env = await fakeDaemon(t, () => {});
  const t0 = Date.now();
  assert.equal(await rpcSnapshot('qemu:///session', 'x', { env, timeoutMs: 300, euid: 7 }), undefined);
  assert.ok(Date.now() - t0 < 3000);
});

test('an auth method rum does not speak (SASL): undefined, nothing more sent', async (t) => {
  const procs: number[] = [];
  const env = await fakeDaemon(t, (sock, call) => {
    procs.push(call.readInt32BE(12));
    sock.write(reply(call, Buffer.from([0, 0, 0, 1, 0, 0, 0, 1]))); // [REMOTE_AUTH_SASL]
  });
  assert.equal(await rpcSnapshot('qemu:///session', 'x', { env, euid: 7 }), undefined);
  assert.deepEqual(procs, [66]);
});

test('a nonsense packet length, or an error where an answer was due: undefined', async (t) => {
  const garbage = await fakeDaemon(t, (sock) => sock.write(Buffer.from([0xff, 0xff, 0xff, 0xff])));
  assert.equal(await rpcSnapshot('qemu:///session', 'x', { env: garbage, timeoutMs: 2000, euid: 7 }), undefined);
  // Auth list fine, then connectOpen refused with an error reply.
  const refused = await fakeDaemon(t, (sock, call) => {
    if (call.readInt32BE(12) === 66) sock.write(reply(call, Buffer.from([0, 0, 0, 0])));
    else sock.write(reply(call, Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]), 1));
  });
  assert.equal(await rpcSnapshot('qemu:///session', 'x', { env: refused, timeoutMs: 2000, euid: 7 }), undefined);
});


test('a domain the daemon does not know (VIR_ERR_NO_DOMAIN) is absent, not a failure', async (t) => {
  const env = await fakeDaemon(t, (sock, call) => {
    const proc = call.readInt32BE(12);
    if (proc === 66) sock.write(reply(call, word(0)));
    else if (proc === 1) sock.write(reply(call, Buffer.alloc(0)));
    else if (proc === 23) sock.write(reply(call, Buffer.concat([word(42), word(10), word(1), xdrString("Domain not found: no domain with matching name 'x'")]), 1));
  });
  assert.deepEqual(await rpcSnapshot('qemu:///session', 'x', { env, timeoutMs: 2000, euid: 7 }), { state: undefined, inactiveXml: undefined });
});

test('replies matched by serial: out of order, with an event packet between them', async (t) => {
  const xml = "<domain type='kvm'>\n  <name>vm</name>\n</domain>\n";
  let held: Buffer | undefined;
  const env = await fakeDaemon(t, (sock, data) => {
    // Calls may arrive together in one chunk: split them by their length words.
    for (let at = 0; at < data.length; at += data.readUInt32BE(at)) {
      const call = data.subarray(at, at + data.readUInt32BE(at));
      const proc = call.readInt32BE(12);
      if (proc === 66 || proc === 1) sock.write(reply(call, proc === 66 ? word(0) : Buffer.alloc(0)));
      else if (proc === 23) sock.write(reply(call, Buffer.concat([xdrString('vm'), Buffer.alloc(16, 1), word(3)])));
      else if (proc === 212) held = reply(call, Buffer.concat([word(5), word(0)])); // shut off; sent last
      else if (proc === 14) {
        const event = reply(call, Buffer.alloc(8));
        event.writeInt32BE(2, 16); // a MESSAGE (an event), whose serial means nothing
        sock.write(Buffer.concat([event, reply(call, xdrString(xml))]));
        sock.write(held!);
      }
    }
  });
  assert.deepEqual(await rpcSnapshot('qemu:///session', 'vm', { env, timeoutMs: 2000, euid: 7 }), { state: 'shut off', inactiveXml: xml });
});
