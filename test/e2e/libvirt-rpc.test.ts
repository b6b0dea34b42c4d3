// rum's read-only libvirt client (src/libvirt/rpc.ts) against the environment's real daemons:
// for a domain that is defined or absent (running: up.test.ts), the socket answers exactly what virsh
// answers, in qemu:///system (read-only socket) and in the test user's qemu:///session.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { execa } from 'execa';
import { DOMAIN_PREFIX, SESSION_URI, SYSTEM_URI, TEST_USER, bootSkipReason, inNs, scratchDir, virsh } from './env.js';

const probe = join(import.meta.dirname, 'snapshot-probe.js');

// Defined only, never started: no disk, no boot, nothing to wait for.
const xml = (name: string) => `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
</domain>
`;

interface Seen {
  rpc: { state?: string; inactiveXml?: string } | null;
  virsh: { state?: string; inactiveXml?: string };
}

function assertSame(seen: Record<string, Seen>, name: string, state: string | undefined): void {
  const s = seen[name]!;
  assert.ok(s.rpc, `${name}: the socket gave no answer (rum would fall back to virsh)`);
  assert.equal(s.rpc.state, state, name);
  assert.equal(s.virsh.state, state, name);
  assert.equal(s.rpc.inactiveXml, s.virsh.inactiveXml, `${name}: persistent XML differs`);
  if (state) assert.match(s.rpc.inactiveXml ?? '', new RegExp(`<name>${name}</name>`));
}

test('libvirt socket: state and persistent XML as virsh gives them (qemu:///system)', async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const name = `${DOMAIN_PREFIX}rpc`;
  const dir = await scratchDir(t);
  await writeFile(join(dir, 'domain.xml'), xml(name));
  await virsh(['define', join(dir, 'domain.xml')]);
  t.after(() => virsh(['undefine', name]).catch(() => undefined));
  // A running domain: up.test.ts compares the two after its no-op up.
  const seen = JSON.parse((await execa(process.execPath, [probe, SYSTEM_URI, name, `${DOMAIN_PREFIX}absent`], { timeout: 60_000 })).stdout) as Record<string, Seen>;
  assertSame(seen, name, 'shut off');
  assertSame(seen, `${DOMAIN_PREFIX}absent`, undefined);
});

test('libvirt socket: the same answers from a session daemon (qemu:///session, test user)', async (t) => {
  const why = bootSkipReason({ session: true });
  if (why) return t.skip(why);
  const name = `${DOMAIN_PREFIX}rpc-session`;
  const dir = await scratchDir(t, { owner: TEST_USER });
  await writeFile(join(dir, 'domain.xml'), xml(name));
  // virsh starts the session daemon if it is not running; the socket client never does.
  await virsh(['define', join(dir, 'domain.xml')], { session: true });
  t.after(() => virsh(['undefine', name], { session: true }).catch(() => undefined));
  const res = await inNs(process.execPath, [probe, SESSION_URI, name, `${DOMAIN_PREFIX}absent`], { user: TEST_USER, timeout: 60_000 });
  const seen = JSON.parse(String(res.stdout)) as Record<string, Seen>;
  assertSame(seen, name, 'shut off');
  assertSame(seen, `${DOMAIN_PREFIX}absent`, undefined);
});

test("libvirt socket: a network's state as virsh gives it (qemu:///system)", async (t) => {
  const why = bootSkipReason();
  if (why) return t.skip(why);
  const { rpcNetworkActive } = await import('../../src/libvirt/rpc.js');
  const { Virsh } = await import('../../src/libvirt/virsh.js');
  const plain = new Virsh(SYSTEM_URI, { env: { RUM_LIBVIRT_RPC: '0' } });
  // The environment's default network is active; a name no network has is undefined both ways.
  for (const name of ['default', `${DOMAIN_PREFIX}no-such-net`]) {
    const byVirsh = (await plain.netInfo(name))?.active;
    assert.equal(await rpcNetworkActive(SYSTEM_URI, name), byVirsh, name);
  }
  assert.equal(await rpcNetworkActive(SYSTEM_URI, 'default'), true);
});
