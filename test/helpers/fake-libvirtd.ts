// A stand-in for libvirtd on a unix socket, for what rum does when the daemon is not there, goes
// away mid-question, or knows no such domain. It speaks just enough of libvirt's RPC for virsh to
// connect (every call answered with zeros: no auth, no features, an empty list) and then acts as
// `mode` says. Reached as qemu+unix:///system?socket=...: rum asks virsh there, never its socket
// client (src/libvirt/rpc.ts takes plain local URIs only).
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export type FakeMode =
  | 'absent' // no socket at all: connecting fails (ENOENT)
  | 'close-at-once' // accepts, then closes before a word (a daemon shutting down, a full server)
  | 'drop-at-lookup' // connects fine, then goes away at the first question about a domain
  | 'lookup-error' // a lookup fails with some error (virsh then says only "failed to get domain"), and the daemon is gone by the next question
  | 'no-domains' // a working daemon that has no domain at all
  | 'running'; // a working daemon where every domain asked for runs, defined by `xml` (its <name> filled in)

const HANDSHAKE = new Set([66, 60, 1, 2]); // authList, supportsFeature, open, close
const LOOKUP_BY_NAME = 23;
const GET_XML_DESC = 14;
const GET_STATE = 212;
const VIR_DOMAIN_RUNNING = 1;
const VIR_ERR_INTERNAL_ERROR = 1;
const VIR_ERR_NO_DOMAIN = 42;

/** XDR as libvirt sends it: a 32-bit word; a string padded to 4 bytes. */
export const word = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
export const xdrString = (s: string) => Buffer.concat([word(Buffer.byteLength(s)), Buffer.from(s), Buffer.alloc((4 - (Buffer.byteLength(s) % 4)) % 4)]);

/** Calls as they arrive on `sock`, split by their length words (several may come in one chunk);
 * `handle` returning 'stop' drops the rest. */
export function onCalls(sock: Socket, handle: (call: Buffer, proc: number) => 'stop' | void): void {
  let buf = Buffer.alloc(0);
  sock.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 4 && buf.length >= buf.readUInt32BE(0)) {
      const call = buf.subarray(0, buf.readUInt32BE(0));
      buf = buf.subarray(call.length);
      if (handle(call, call.readInt32BE(12)) === 'stop') return;
    }
  });
}

/** A reply packet to the call in `call`, with `body`. */
export function reply(call: Buffer, body: Buffer, status = 0): Buffer {
  const head = Buffer.alloc(28);
  head.writeUInt32BE(28 + body.length, 0);
  call.copy(head, 4, 4, 16); // program, version, procedure
  head.writeInt32BE(1, 16); // REPLY
  head.writeUInt32BE(call.readUInt32BE(20), 20); // serial
  head.writeInt32BE(status, 24);
  return Buffer.concat([head, body]);
}

/** remote_error: code, domain, message, level, then the optional fields, all absent. */
function libvirtError(code: number, text: string): Buffer {
  const message = Buffer.concat([word(1), xdrString(text)]);
  return Buffer.concat([word(code), word(10), message, word(2), ...Array.from({ length: 7 }, () => word(0))]);
}

export interface FakeLibvirtd {
  uri: string;
  socket: string;
  /** Procedure numbers called, in order. */
  calls: number[];
}

export async function fakeLibvirtd(t: TestContext, mode: FakeMode, opts: { xml?: string } = {}): Promise<FakeLibvirtd> {
  const dir = mkdtempSync(join(tmpdir(), 'rum-fake-libvirtd-'));
  const socket = join(dir, 'libvirt-sock');
  const calls: number[] = [];
  let asked = '';
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  if (mode === 'absent') return { uri: `qemu+unix:///system?socket=${socket}`, socket, calls };
  const server = createServer((sock: Socket) => {
    sock.on('error', () => undefined);
    if (mode === 'close-at-once') return void sock.destroy();
    onCalls(sock, (call, proc) => {
      calls.push(proc);
      if ((mode === 'drop-at-lookup' && !HANDSHAKE.has(proc)) || (mode === 'lookup-error' && !HANDSHAKE.has(proc) && proc !== LOOKUP_BY_NAME)) {
        sock.destroy();
        return 'stop';
      }
      if (proc === LOOKUP_BY_NAME && mode === 'running') {
        // remote_nonnull_domain: name, uuid (16 bytes), id.
        asked = call.toString('utf8', 32, 32 + call.readUInt32BE(28));
        sock.write(reply(call, Buffer.concat([xdrString(asked), Buffer.alloc(16, 7), word(1)])));
      } else if (proc === GET_STATE && mode === 'running') sock.write(reply(call, Buffer.concat([word(VIR_DOMAIN_RUNNING), word(1)])));
      else if (proc === GET_XML_DESC && mode === 'running') sock.write(reply(call, xdrString((opts.xml ?? '<domain type="kvm"><name>NAME</name></domain>\n').replace('NAME', asked))));
      else if (proc === LOOKUP_BY_NAME) {
        const name = call.toString('utf8', 32, 32 + call.readUInt32BE(28));
        const error =
          mode === 'lookup-error'
            ? libvirtError(VIR_ERR_INTERNAL_ERROR, 'internal error: the daemon is shutting down')
            : libvirtError(VIR_ERR_NO_DOMAIN, `Domain not found: no domain with matching name '${name}'`);
        sock.write(reply(call, error, 1));
      } else sock.write(reply(call, Buffer.alloc(8)));
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { uri: `qemu+unix:///system?socket=${socket}`, socket, calls };
}
