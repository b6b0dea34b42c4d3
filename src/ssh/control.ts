// Owns: sharing one SSH login between rum processes, as OpenSSH's ControlMaster does. The first
// command that needs the guest starts a master: a detached process that logs in once and serves
// exec requests on a unix socket (mode 0600). Later commands skip loading ssh2 and the handshake
// (most of a plain ssh's time under TCG): each exec is one channel on the master's connection.
// The master ends with its connection (the guest stopped or rebooted, which also retires a host
// key that --reset replaced), after `persistMs` without a request, or when its socket file is
// removed or replaced (destroy). Not: which VM this is, or where its socket lives.
import { spawn } from 'node:child_process';
import { statSync, unlinkSync } from 'node:fs';
import { connect as dial, createServer, type Server, type Socket } from 'node:net';
import { PassThrough, type Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { collectText, SshError, type ExecOptions, type ExecResult, type ExecTextResult, type SshFailureKind, type SshSession, type SshTarget } from './connect.js';
import { pollUntil } from '../files/wait.js';

/** What commands need of a guest connection: a direct SshSession or a ControlSession. */
export interface GuestShell {
  readonly target: SshTarget;
  exec(command: string, opts?: ExecOptions): Promise<ExecResult>;
  execText(command: string, opts?: Omit<ExecOptions, 'stdout' | 'stderr'>): Promise<ExecTextResult>;
  close(): Promise<void>;
}

export interface MasterConfig {
  socketPath: string;
  target: Omit<SshTarget, 'privateKey'> & { privateKey: string };
  persistMs: number;
}

/** A failure as it crosses a process boundary (the report line, an F frame) and back. */
type WireFailure = { kind: SshFailureKind; message: string; hint?: string };
function toWire(err: unknown): WireFailure {
  const e = err instanceof SshError ? err : new SshError('connection-lost', (err as Error).message);
  return { kind: e.kind, message: e.message, ...(e.hint ? { hint: e.hint } : {}) };
}
const fromWire = (f: WireFailure): SshError => new SshError(f.kind, f.message, f.hint);

// Frames on the socket: one type byte, a 32-bit length, the payload. One exec per connection.
// client -> master: R request {command, pty}, I stdin data, E stdin end.
// master -> client: O stdout, X stderr, T exit {code, signal}, F failure {kind, message, hint}.
const MAX_FRAME = 16 * 2 ** 20;
// sun_path holds 108 bytes on Linux; a longer socket path means no sharing, not an error.
const MAX_SOCKET_PATH = 100;

function head(type: string, length: number): Buffer {
  const h = Buffer.allocUnsafe(5);
  h[0] = type.charCodeAt(0);
  h.writeUInt32BE(length, 1);
  return h;
}

/** Writes one frame; false when the socket wants a drain. */
function send(sock: Socket, type: string, payload: Buffer | string = ''): boolean {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  sock.write(head(type, body.length));
  return sock.write(body);
}

class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly on: (type: string, body: Buffer) => void) {}
  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(1);
      if (len > MAX_FRAME) throw new Error(`control frame of ${len} bytes`);
      if (this.buf.length < 5 + len) return;
      const type = String.fromCharCode(this.buf[0]!);
      const body = this.buf.subarray(5, 5 + len);
      this.buf = this.buf.subarray(5 + len);
      this.on(type, body);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The client side

/** Execs through a running master. Each exec is its own socket connection; close() has nothing to do. */
export class ControlSession implements GuestShell {
  constructor(
    readonly socketPath: string,
    readonly target: SshTarget,
  ) {}

  exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    opts.signal?.throwIfAborted();
    return new Promise<ExecResult>((resolve, reject) => {
      const sock = dial(this.socketPath);
      const stdin = opts.stdin;
      let done = false;
      const finish = (err: Error | undefined, r?: ExecResult): void => {
        if (done) return;
        done = true;
        opts.signal?.removeEventListener('abort', onAbort);
        if (stdin && typeof stdin !== 'string' && !Buffer.isBuffer(stdin)) {
          (stdin as Readable).off('data', onStdin).off('end', onStdinEnd);
          (stdin as Readable).pause(); // so a piped process.stdin lets the process exit
        }
        sock.destroy();
        if (err) reject(err);
        else resolve(r!);
      };
      // Ending the socket makes the master end the command (SIGTERM, channel closed).
      const onAbort = (): void => finish(opts.signal!.reason as Error);
      opts.signal?.addEventListener('abort', onAbort, { once: true });

      let waiting = false; // paused for a slow stdout/stderr
      const out = (w: Writable | undefined, body: Buffer): void => {
        if (!w || w.write(body) || waiting) return;
        waiting = true;
        sock.pause();
        w.once('drain', () => {
          waiting = false;
          sock.resume();
        });
      };
      const reader = new FrameReader((type, body) => {
        if (type === 'O') out(opts.stdout, body);
        else if (type === 'X') out(opts.stderr, body);
        else if (type === 'T') finish(undefined, JSON.parse(body.toString()) as ExecResult);
        else if (type === 'F') finish(fromWire(JSON.parse(body.toString()) as WireFailure));
      });
      sock.on('data', (chunk: Buffer) => {
        try {
          reader.push(chunk);
        } catch (err) {
          finish(err as Error);
        }
      });
      sock.on('error', () => {}); // 'close' follows and reports
      sock.on('close', () =>
        finish(new SshError('connection-lost', `${this.target.user}@${this.target.host}: the shared SSH connection closed before "${command}" finished`)),
      );

      send(sock, 'R', JSON.stringify({ command, pty: opts.pty === true }));
      const onStdin = (chunk: Buffer | string): void => {
        if (!send(sock, 'I', typeof chunk === 'string' ? Buffer.from(chunk) : chunk)) {
          (stdin as Readable).pause();
          sock.once('drain', () => (stdin as Readable).resume());
        }
      };
      const onStdinEnd = (): void => void send(sock, 'E');
      if (stdin === undefined) send(sock, 'E');
      else if (typeof stdin === 'string' || Buffer.isBuffer(stdin)) {
        send(sock, 'I', stdin);
        send(sock, 'E');
      } else {
        (stdin as Readable).on('data', onStdin).once('end', onStdinEnd);
        (stdin as Readable).resume();
      }
    });
  }

  execText(command: string, opts: Omit<ExecOptions, 'stdout' | 'stderr'> = {}): Promise<ExecTextResult> {
    return collectText(this, command, opts);
  }

  async close(): Promise<void> {}
}

/** Does a master answer on this socket? */
function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dial(socketPath);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * A session through the master on `socketPath`, starting one when none answers. undefined when
 * sharing cannot work here (a socket path too long for the kernel, or no master process could
 * start): the caller connects directly. A master that could not log in throws the SshError a
 * direct connection would have.
 */
export async function controlSession(socketPath: string, target: SshTarget, persistMs: number): Promise<ControlSession | undefined> {
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) return undefined;
  if (!(await answers(socketPath))) {
    const config: MasterConfig = { socketPath, persistMs, target: { ...target, privateKey: target.privateKey.toString() } };
    const report = await startMaster(config);
    if (report === undefined) return undefined;
    if ('error' in report) throw fromWire(report.error);
  }
  return new ControlSession(socketPath, target);
}

type Report = { ok: true } | { error: WireFailure };

/** Spawns a detached master and waits (bounded) for its one-line report: logged in, or why not. */
function startMaster(config: MasterConfig): Promise<Report | undefined> {
  return new Promise((resolve) => {
    const script = fileURLToPath(new URL('./control-master.js', import.meta.url));
    // Keys travel on stdin, never in argv (visible to every user in ps).
    // It makes no https request: Node need not parse NODE_EXTRA_CA_CERTS for it (~45 ms).
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: '' };
    const child = spawn(process.execPath, [script], { detached: true, env, stdio: ['pipe', 'pipe', 'ignore'] });
    let text = '';
    const done = (r: Report | undefined): void => {
      clearTimeout(timer);
      child.stdout.destroy();
      child.unref();
      resolve(r);
    };
    // Login has its own 20 s bound; this one only guards against a master that never reports.
    const timer = setTimeout(() => done(undefined), 30_000);
    child.on('error', () => done(undefined));
    child.stdin.on('error', () => {});
    child.stdin.end(JSON.stringify(config));
    child.stdout.on('data', (c: Buffer) => {
      text += c.toString();
      const nl = text.indexOf('\n');
      if (nl < 0) return;
      try {
        done(JSON.parse(text.slice(0, nl)) as Report);
      } catch {
        done(undefined);
      }
    });
    child.stdout.on('end', () => done(undefined));
  });
}

// ---------------------------------------------------------------------------------------------
// The master side

/**
 * Run as the master process: claim the socket, log in, report one line on stdout, then serve
 * until the connection ends, the socket is taken away, or nothing asked for `persistMs`.
 */
export async function runMaster(config: MasterConfig, report: (r: Report) => void): Promise<void> {
  process.umask(0o077); // the socket is created 0600: only this user may use this login
  const server = createServer({ pauseOnConnect: true });
  if (!(await claim(server, config.socketPath))) {
    report({ ok: true }); // another master got there first and serves
    return;
  }
  const inode = statSync(config.socketPath).ino;
  const ours = (): boolean => {
    try {
      return statSync(config.socketPath).ino === inode;
    } catch {
      return false;
    }
  };
  const { connect } = await import('./connect.js');
  const sessionP = connect({ ...config.target });
  sessionP.catch(() => {});

  let active = 0;
  let idle: NodeJS.Timeout | undefined;
  let session: SshSession | undefined;
  const sockets = new Set<Socket>();
  const quit = (): void => {
    clearTimeout(idle);
    server.close();
    if (ours()) unlinkSync(config.socketPath);
    for (const s of sockets) s.end();
    void session?.close();
    // Let failure frames flush; then nothing holds the process.
    setTimeout(() => process.exit(0), 500).unref();
  };
  // A socket removed (destroy) or taken over retires the master once its clients are served.
  const arm = (): void => {
    clearTimeout(idle);
    if (active === 0) idle = setTimeout(quit, ours() ? config.persistMs : 0);
  };

  server.on('connection', (sock: Socket) => {
    active++;
    sockets.add(sock);
    clearTimeout(idle);
    sock.on('close', () => {
      active--;
      sockets.delete(sock);
      arm();
    });
    void serve(sock, sessionP);
  });

  try {
    session = await sessionP;
  } catch (err) {
    report({ error: toWire(err) });
    quit();
    return;
  }
  session.onClose(quit);
  report({ ok: true });
  arm();
}

/** Claims the socket path; false when a live master holds it. A stale socket is replaced. */
async function claim(server: Server, socketPath: string): Promise<boolean> {
  const listen = (): Promise<NodeJS.ErrnoException | undefined> =>
    new Promise((resolve) => {
      server.once('error', resolve);
      server.listen(socketPath, () => {
        server.off('error', resolve);
        resolve(undefined);
      });
    });
  let err = await listen();
  if (err?.code === 'EADDRINUSE') {
    // A master that has bound but not yet listens refuses for a moment: ask thrice before
    // calling the socket stale.
    if (await pollUntil(() => answers(socketPath), { everyMs: 50, maxTries: 3, timeoutMs: 1000 })) return false;
    unlinkSync(socketPath); // a master that died without cleaning up
    err = await listen();
  }
  if (err) throw err;
  return true;
}

/** One exec request on one client connection. */
async function serve(sock: Socket, sessionP: Promise<SshSession>): Promise<void> {
  const abort = new AbortController();
  const stdin = new PassThrough();
  let request: { command: string; pty: boolean } | undefined;
  let started: (() => void) | undefined;
  const requested = new Promise<void>((r) => (started = r));
  const fail = (err: unknown): void => {
    send(sock, 'F', JSON.stringify(toWire(err)));
    sock.end();
  };
  const reader = new FrameReader((type, body) => {
    if (type === 'R') {
      request = JSON.parse(body.toString()) as { command: string; pty: boolean };
      started!();
    } else if (type === 'I') {
      if (!stdin.write(body)) {
        sock.pause();
        stdin.once('drain', () => sock.resume());
      }
    } else if (type === 'E') stdin.end();
  });
  sock.on('data', (chunk: Buffer) => {
    try {
      reader.push(chunk);
    } catch {
      sock.destroy();
    }
  });
  sock.on('error', () => {});
  // The client went away (Ctrl-C, killed): end its command as a dropped ssh would.
  sock.on('close', () => abort.abort(new Error('client gone')));
  sock.resume();

  await Promise.race([requested, new Promise((r) => sock.once('close', r))]);
  if (!request) return;
  let session: SshSession;
  try {
    session = await sessionP;
  } catch (err) {
    fail(err);
    return;
  }
  // Output frames wait for the socket: a slow reader slows the guest command, nothing piles up.
  const framed = (type: string): Writable =>
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        if (send(sock, type, chunk)) cb();
        else sock.once('drain', () => cb());
      },
    });
  const stdout = framed('O');
  const stderr = framed('X');
  try {
    const r = await session.exec(request.command, { stdin, stdout, stderr, signal: abort.signal, pty: request.pty });
    // Output still queued behind a slow reader goes out before the exit status.
    await Promise.all([stdout, stderr].map((w) => finished(w.end())));
    send(sock, 'T', JSON.stringify(r));
    sock.end();
  } catch (err) {
    if (abort.signal.aborted) return;
    fail(err);
  }
}
