// Owns: asking a local libvirt daemon a read-only question over its own RPC protocol (XDR over
// the UNIX socket, the protocol virsh itself speaks), without starting a virsh process. Only
// what the fast commands ask: a domain's state and persistent XML. Anything unexpected answers
// "unavailable", and the caller asks virsh, which owns every failure message.
import { createConnection, type Socket } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { uriDaemon } from './uri.js';

const PROGRAM = 0x20008086; // REMOTE_PROGRAM
const VERSION = 1;
const CALL = 0;
const REPLY = 1;
const OK = 0;
const ERROR = 1;
const PROC = { connectOpen: 1, connectClose: 2, getXmlDesc: 14, lookupByName: 23, networkLookupByName: 46, authList: 66, authPolkit: 70, networkIsActive: 152, getState: 212 } as const;
const CONNECT_RO = 1;
const XML_INACTIVE = 2;
const ERR_NO_DOMAIN = 42;
const ERR_NO_NETWORK = 43;
const SHUTOFF = 5; // virDomainState
const SHUTOFF_SAVED = 5; // virDomainShutoffReason
const AUTH_NONE = 0;
const AUTH_POLKIT = 2;
const MAX_PACKET = 32 * 1024 * 1024; // libvirt's own limit (VIR_NET_MESSAGE_MAX)

// virDomainState, as virsh names it.
const STATES = ['no state', 'running', 'idle', 'paused', 'in shutdown', 'shut off', 'crashed', 'pmsuspended'] as const;

export interface RpcSnapshot {
  state: string | undefined; // virsh's word for it; undefined: no such domain
  inactiveXml: string | undefined;
}

/** The sockets a plain local URI may reach, in libvirt's client's order: the modular daemon's
 * when its socket file exists, else libvirtd's. Undefined for any other URI (remote, parameters,
 * other drivers), and for a session URI as root, which libvirt sends to the system daemon. */
export function localSockets(uri: string, env: NodeJS.ProcessEnv, euid = process.geteuid?.() ?? 0): { paths: string[]; readonly: boolean } | undefined {
  const daemon = uriDaemon(uri);
  if (daemon === undefined || uri !== `qemu:///${daemon}`) return undefined; // a transport, host or parameter may lead elsewhere
  if (daemon === 'system') return { paths: ['/run/libvirt/virtqemud-sock-ro', '/run/libvirt/libvirt-sock-ro'], readonly: true };
  if (euid !== 0) {
    const dir = join(env.XDG_RUNTIME_DIR || env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache'), 'libvirt');
    return { paths: [join(dir, 'virtqemud-sock'), join(dir, 'libvirt-sock')], readonly: false };
  }
  return undefined;
}

class Unavailable extends Error {}

/**
 * State and persistent XML of `name` from the daemon behind `uri`, or undefined when this way is
 * not open (no socket, an auth method other than none or polkit, a protocol surprise, no answer
 * within `timeoutMs`). A session daemon that is not running is not started here: virsh does that.
 */
export async function rpcSnapshot(
  uri: string,
  name: string,
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; euid?: number } = {},
): Promise<RpcSnapshot | undefined> {
  const snaps = await rpcSnapshots(uri, [name], opts);
  return snaps && (snaps.get(name) ?? { state: undefined, inactiveXml: undefined });
}

/** rpcSnapshot for several domains over one connection (`rum list`): only the names the daemon
 * knows are in the map. */
export function rpcSnapshots(
  uri: string,
  names: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; euid?: number } = {},
): Promise<Map<string, RpcSnapshot> | undefined> {
  return rpc(uri, opts, (c, readonly) => snapshots(c, uri, names, readonly));
}

/** Whether the libvirt network `name` is active (undefined: no such network), or `unavailable`
 * when this way is not open (see rpcSnapshot): then ask virsh. */
export async function rpcNetworkActive(
  uri: string,
  name: string,
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; euid?: number } = {},
): Promise<boolean | undefined | 'unavailable'> {
  const r = await rpc(uri, opts, async (c, readonly) => {
    await open(c, uri, readonly);
    let net: Buffer;
    try {
      net = await c.call(PROC.networkLookupByName, new Writer().string(name).done());
    } catch (err) {
      if (err instanceof LibvirtError && err.code === ERR_NO_NETWORK) return { active: undefined };
      throw err;
    }
    const active = new Reader(await c.call(PROC.networkIsActive, net)).int() === 1;
    c.send(PROC.connectClose, Buffer.alloc(0));
    return { active };
  });
  return r === undefined ? 'unavailable' : r.active;
}

/** One exchange with the daemon behind `uri`'s local socket, or undefined when that way is not
 * open (no socket, a refusal, a protocol surprise, no answer within the deadline). */
async function rpc<T>(
  uri: string,
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; euid?: number },
  exchange: (c: Connection, readonly: boolean) => Promise<T>,
): Promise<T | undefined> {
  const where = localSockets(uri, opts.env ?? process.env, opts.euid);
  if (!where) return undefined;
  for (const path of where.paths) {
    const conn = new Connection(path);
    // One deadline for the whole exchange, connecting included.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Unavailable('deadline')), opts.timeoutMs ?? 5000);
    });
    try {
      return await Promise.race([exchange(conn, where.readonly), deadline]);
    } catch (err) {
      // No such socket: the next one. Anything else, a socket that refuses included: virsh says why.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      return undefined;
    } finally {
      clearTimeout(timer);
      conn.close();
    }
  }
  return undefined;
}

/** Authenticates (none or polkit only) and opens the connection. */
async function open(c: Connection, uri: string, readonly: boolean): Promise<void> {
  const auth = new Reader(await c.call(PROC.authList, Buffer.alloc(0)));
  const types = auth.array(() => auth.int());
  if (types.length > 0 && !types.includes(AUTH_NONE)) {
    if (!types.includes(AUTH_POLKIT)) throw new Unavailable('auth');
    await c.call(PROC.authPolkit, Buffer.alloc(0));
  }
  await c.call(PROC.connectOpen, new Writer().optString(uri).uint(readonly ? CONNECT_RO : 0).done());
}

async function snapshots(c: Connection, uri: string, names: readonly string[], readonly: boolean): Promise<Map<string, RpcSnapshot>> {
  await open(c, uri, readonly);
  // Every lookup at once, then every found domain's two questions at once: two round trips
  // whatever the number of names.
  const found = await Promise.all(
    names.map(async (name) => {
      try {
        // The reply is the remote_nonnull_domain the next calls take as their first argument.
        return { name, dom: await c.call(PROC.lookupByName, new Writer().string(name).done()) };
      } catch (err) {
        if (err instanceof LibvirtError && err.code === ERR_NO_DOMAIN) return undefined;
        throw err;
      }
    }),
  );
  const snaps = await Promise.all(
    found.flatMap((f) => (f ? [f] : [])).map(async ({ name, dom }) => {
      const [stateRet, xmlRet] = await Promise.all([
        c.call(PROC.getState, Buffer.concat([dom, new Writer().uint(0).done()])),
        c.call(PROC.getXmlDesc, Buffer.concat([dom, new Writer().uint(XML_INACTIVE).done()])),
      ]);
      const r = new Reader(stateRet);
      const [state, reason] = [r.int(), r.int()];
      // Shut off by a managed save: virsh's `domstate --reason` words it so.
      const word = state === SHUTOFF && reason === SHUTOFF_SAVED ? 'shut off (saved)' : (STATES[state] ?? 'unknown');
      return [name, { state: word, inactiveXml: new Reader(xmlRet).string() }] as const;
    }),
  );
  c.send(PROC.connectClose, Buffer.alloc(0));
  return new Map(snaps);
}

class LibvirtError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** One connection: calls matched to replies by serial; every other packet (events) ignored. */
class Connection {
  private serial = 0;
  private buf: Buffer = Buffer.alloc(0);
  private readonly waiting = new Map<number, { resolve: (b: Buffer) => void; reject: (e: Error) => void }>();
  private failure: Error | undefined;

  private readonly sock: Socket;

  /** Calls made before the socket connects wait in its buffer; a failure to connect fails them. */
  constructor(path: string) {
    this.sock = createConnection(path);
    this.sock.on('data', (chunk: Buffer) => this.receive(chunk));
    this.sock.on('error', (e) => this.fail(e));
    this.sock.on('close', () => this.fail(new Unavailable('closed')));
  }

  call(proc: number, body: Buffer): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    const serial = this.send(proc, body);
    return new Promise((resolve, reject) => this.waiting.set(serial, { resolve, reject }));
  }

  send(proc: number, body: Buffer): number {
    const serial = ++this.serial;
    const head = new Writer().uint(28 + body.length).uint(PROGRAM).uint(VERSION).int(proc).int(CALL).uint(serial).int(OK).done();
    this.sock.write(Buffer.concat([head, body]));
    return serial;
  }

  close(): void {
    // The daemon closes its end after connectClose; the process need not wait for it.
    this.sock.end();
    this.sock.unref();
  }

  private receive(chunk: Buffer): void {
    try {
      this.parse(chunk);
    } catch (err) {
      this.fail(err instanceof Error ? err : new Unavailable(String(err))); // a malformed reply
    }
  }

  private parse(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0);
      if (len < 28 || len > MAX_PACKET) return this.fail(new Unavailable('bad packet length'));
      if (this.buf.length < len) return;
      const packet = this.buf.subarray(0, len);
      this.buf = this.buf.subarray(len);
      const prog = packet.readUInt32BE(4);
      const type = packet.readInt32BE(16);
      const serial = packet.readUInt32BE(20);
      const status = packet.readInt32BE(24);
      const w = this.waiting.get(serial);
      if (prog !== PROGRAM || type !== REPLY || !w) continue;
      const body = packet.subarray(28);
      if (status === OK) {
        this.waiting.delete(serial);
        w.resolve(body);
      } else if (status === ERROR) {
        const r = new Reader(body);
        const code = r.int();
        r.int(); // error domain
        const message = r.optString() ?? `libvirt error ${code}`;
        this.waiting.delete(serial);
        w.reject(new LibvirtError(code, message));
      } else throw new Unavailable(`reply status ${status}`);
    }
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const w of this.waiting.values()) w.reject(this.failure);
    this.waiting.clear();
    this.sock.destroy();
  }
}

/** XDR, as much of it as these calls need: big-endian 32-bit words, strings padded to 4. */
class Writer {
  private readonly parts: Buffer[] = [];
  uint(n: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n >>> 0);
    this.parts.push(b);
    return this;
  }
  int(n: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(n);
    this.parts.push(b);
    return this;
  }
  string(s: string): this {
    const bytes = Buffer.from(s, 'utf8');
    this.uint(bytes.length);
    this.parts.push(bytes, Buffer.alloc((4 - (bytes.length % 4)) % 4));
    return this;
  }
  optString(s: string | undefined): this {
    return s === undefined ? this.uint(0) : this.uint(1).string(s);
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

class Reader {
  private at = 0;
  constructor(private readonly b: Buffer) {}
  int(): number {
    if (this.at + 4 > this.b.length) throw new Unavailable('short reply');
    const n = this.b.readInt32BE(this.at);
    this.at += 4;
    return n;
  }
  string(): string {
    const len = this.int();
    if (len < 0 || this.at + len > this.b.length) throw new Unavailable('bad string');
    const s = this.b.toString('utf8', this.at, this.at + len);
    this.at += len + ((4 - (len % 4)) % 4);
    return s;
  }
  optString(): string | undefined {
    return this.int() === 0 ? undefined : this.string();
  }
  array<T>(item: () => T): T[] {
    const n = this.int();
    if (n < 0 || n > 1024) throw new Unavailable('bad array');
    return Array.from({ length: n }, item);
  }
}
