// tasks/ssh-port.ts: user networking's SSH port is never a host port rum.yaml forwards itself,
// a kept port that now collides is given up, and the rule's key changes with the forwarded ports.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { RumError } from '../../src/errors.js';
import { initDigests } from '../../src/graph/digest.js';
import type { RumCtx } from '../../tasks/context.js';
import { freePortAvoiding, sshPort, sshPortFor, type HeldPort } from '../../tasks/ssh-port.js';

/** A kernel that offers `ports` in turn; records what is held and closed. */
function fakeKernel(ports: number[]) {
  const offered: number[] = [];
  const open = new Set<number>();
  const hold = async (): Promise<HeldPort> => {
    const port = ports.shift();
    if (port === undefined) throw Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' });
    assert.ok(!open.has(port), `port ${port} offered while held`);
    offered.push(port);
    open.add(port);
    return { port, close: async () => void open.delete(port) };
  };
  return { hold, offered, open };
}

test('a new port skips every forwarded host port the kernel offers, and releases them all', async () => {
  const k = fakeKernel([8080, 2222, 40000, 40001]);
  assert.equal(await sshPortFor([2222, 8080, 9000], undefined, k.hold), 40000);
  assert.deepEqual(k.offered, [8080, 2222, 40000]);
  assert.equal(k.open.size, 0, 'nothing stays held');
});

test('the kept port stays unless ports: now forwards it; 22 (nat mode\'s answer) is never kept', async () => {
  assert.equal(await sshPortFor([8080], 41000, fakeKernel([]).hold), 41000);
  const k = fakeKernel([41000, 41001]);
  assert.equal(await sshPortFor([8080, 41000], 41000, k.hold), 41001, 'kept, then forwarded by rum.yaml');
  assert.equal(await sshPortFor([], 22, fakeKernel([42000]).hold), 42000);
  for (const junk of ['41000', 0, -1, 1.5, null, {}]) assert.equal(await sshPortFor([], junk, fakeKernel([42001]).hold), 42001, String(junk));
});

test('no port left: a RumError after at most forwarded + 1 tries, never a loop', async () => {
  // A kernel that keeps offering forwarded ports (a tiny ip_local_port_range) runs out.
  const k = fakeKernel([8080, 8081, 8082]);
  await assert.rejects(freePortAvoiding(new Set([8080, 8081, 8082]), k.hold), (err: unknown) => {
    assert.ok(err instanceof RumError);
    assert.match(err.message, /no free port on 127\.0\.0\.1 for the guest's SSH besides the 3 that ports: forwards/);
    assert.match(err.hint!, /ip_local_port_range/);
    assert.equal((err.cause as { code?: string }).code, 'EADDRINUSE');
    return true;
  });
  assert.equal(k.open.size, 0);
  const stuck = { hold: async (): Promise<HeldPort> => ({ port: 8080, close: async () => {} }) }; // misbehaves: same port again
  await assert.rejects(freePortAvoiding(new Set([8080]), stuck.hold), RumError);
});

test('the real kernel: a port that is free and not forwarded', async () => {
  // Forward the next ports the kernel is likely to offer, and a few it just gave out.
  const avoid = new Set<number>();
  for (let i = 0; i < 20; i++) avoid.add(await freePortAvoiding(new Set()));
  const port = await freePortAvoiding(avoid);
  assert.ok(!avoid.has(port) && port > 1023, String(port));
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

test('inputs: the forwarded host ports, sorted and once each, in user networking only', async () => {
  const ctx = (mode: 'user' | 'nat', hosts: number[]) =>
    ({ config: { network: { mode }, ports: hosts.map((host, i) => ({ host, guest: 80 + i, bind: '127.0.0.1', proto: i % 2 ? 'udp' : 'tcp' })) } }) as unknown as RumCtx;
  assert.deepEqual(await sshPort.inputs(ctx('user', [8443, 8080, 8443])), { 'network.mode': 'user', ports: [8080, 8443] });
  assert.deepEqual(await sshPort.inputs(ctx('nat', [8443, 8080])), { 'network.mode': 'nat', ports: [] });
  assert.ok(sshPort.version >= 2, 'the same inputs now give another port when one collides');
});

test('build: nat mode is the guest\'s own 22; user mode keeps a port that does not collide', async () => {
  await initDigests();
  const build = (inputs: { 'network.mode': 'user' | 'nat'; ports: number[] }, previous?: number) =>
    sshPort.build({ inputs, previous: previous === undefined ? undefined : { digest: 'x' as never, data: { port: previous } } } as never);
  assert.deepEqual((await build({ 'network.mode': 'nat', ports: [] })).data, { port: 22 });
  const kept = await build({ 'network.mode': 'user', ports: [8080] }, 45678);
  assert.deepEqual(kept.data, { port: 45678 });
  const moved = await build({ 'network.mode': 'user', ports: [8080, 45678] }, 45678);
  const port = (moved.data as { port: number }).port;
  assert.ok(port !== 45678 && port !== 8080 && port !== 22, String(port));
  assert.notEqual(moved.digest, kept.digest, 'dependents see the new port');
});
