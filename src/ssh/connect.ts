// Owns: talking to a guest's sshd from inside rum (ssh2): connecting with the host key pinned,
// running commands with stdout and stderr kept apart, and waiting for a booting guest to answer.
// Not: the keys themselves (keys.ts), files for OpenSSH (known-hosts.ts, openssh.ts), or which VM
// this is. ssh2 costs ~50 ms to load, so it is imported only when a connection is made.
import { createHash } from 'node:crypto';
import { connect as tcpConnect, type Socket } from 'node:net';
import { type Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client, ClientChannel, ConnectConfig } from 'ssh2';
import { RumError } from '../errors.js';

export interface SshTarget {
  host: string;
  port: number;
  user: string;
  privateKey: string | Buffer;
  hostKey: string; // the pinned "ssh-ed25519 AAAA... [comment]": nothing else is ever accepted
}

export type SshFailureKind =
  | 'host-key-mismatch' // never retried: something other than our guest answered
  | 'bad-key' // the pinned host key or the client key cannot be read: retrying cannot help
  | 'unreachable' // TCP: refused, reset, no route
  | 'handshake' // TCP open but no SSH handshake (QEMU user networking accepts before sshd is up)
  | 'auth' // the guest refused our key (early boot: the user may not exist yet)
  | 'timeout'
  | 'connection-lost'
  | 'command-failed';

export class SshError extends RumError {
  constructor(
    readonly kind: SshFailureKind,
    message: string,
    hint?: string,
    opts?: ErrorOptions,
  ) {
    super('SSH', message, hint, opts);
  }
  /** While a guest boots, everything but a wrong key or a failed command may pass. */
  get retryable(): boolean {
    return this.kind !== 'host-key-mismatch' && this.kind !== 'bad-key' && this.kind !== 'command-failed';
  }
}

export interface ConnectOptions {
  signal?: AbortSignal;
  readyTimeoutMs?: number; // TCP connect + handshake + login; default 20 s
}

export interface ExecOptions {
  stdin?: NodeJS.ReadableStream | Buffer | string; // none: the command reads EOF at once
  stdout?: Writable; // not ended when the command ends; none: discarded
  stderr?: Writable;
  signal?: AbortSignal; // sends SIGTERM to the command and closes the channel
  pty?: boolean; // a pseudo-terminal: the guest merges stderr into stdout
}

export interface ExecResult {
  code: number | null; // null when the command died of a signal
  signal?: string; // e.g. "SIGTERM"
}

export interface ExecTextResult extends ExecResult {
  stdout: string;
  stderr: string;
}

/** One SSH connection. Each exec opens a channel on it, so many commands share one login. */
export class SshSession {
  private closedFlag = false;
  private lastError: Error | undefined;

  constructor(
    private readonly client: Client,
    readonly target: SshTarget,
  ) {
    // After login an 'error' (a keepalive timeout, a reset) must not crash the process:
    // it is kept, and the exec that was running learns of it when its channel closes.
    client.on('error', (err) => (this.lastError = err));
    client.on('close', () => (this.closedFlag = true));
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Called once the connection has ended (at once if it already has). */
  onClose(fn: () => void): void {
    if (this.closedFlag) fn();
    else this.client.once('close', fn);
  }

  /** A TCP stream to `host:port` as seen from the guest (a direct-tcpip channel). */
  forwardOut(fromHost: string, fromPort: number, host: string, port: number): Promise<import('node:stream').Duplex> {
    if (this.closedFlag) return Promise.reject(this.lost(`forward to ${host}:${port}`));
    return new Promise((resolve, reject) => {
      try {
        this.client.forwardOut(fromHost, fromPort, host, port, (err, ch) =>
          err ? reject(new SshError('connection-lost', `${this.where}: cannot forward to ${host}:${port}: ${err.message}`, undefined, { cause: err })) : resolve(ch),
        );
      } catch (err) {
        reject(this.lost(`forward to ${host}:${port}`, err));
      }
    });
  }

  async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    opts.signal?.throwIfAborted();
    if (this.closedFlag) throw this.lost(command);
    return new Promise<ExecResult>((resolve, reject) => {
      try {
        this.client.exec(command, opts.pty ? { pty: true } : {}, (err, ch) =>
          err ? reject(new SshError('connection-lost', `${this.where}: cannot start "${command}": ${err.message}`, undefined, { cause: err })) : this.run(ch, command, opts, resolve, reject),
        );
      } catch (err) {
        reject(this.lost(command, err)); // ssh2 throws "Not connected" synchronously
      }
    });
  }

  /**
   * Wires a new channel at once, in ssh2's callback: the exit status may arrive in the same read
   * as the channel's confirmation, and an 'exit' emitted before a listener is lost (seen with
   * concurrent short commands).
   */
  private run(channel: ClientChannel, command: string, opts: ExecOptions, resolve: (r: ExecResult) => void, reject: (e: unknown) => void): void {
    let exit: ExecResult | undefined;
    let channelError: Error | undefined; // e.g. stdin written after the guest closed the channel
    channel.on('error', (err: Error) => (channelError = err));
    channel.on('exit', (code: number | null, signal?: string) => {
      exit = typeof code === 'number' ? { code } : { code: null, ...(signal ? { signal } : {}) };
    });
    if (opts.stdout) channel.pipe(opts.stdout, { end: false });
    else channel.resume();
    if (opts.stderr) channel.stderr.pipe(opts.stderr, { end: false });
    else channel.stderr.resume();

    const stdin = opts.stdin;
    if (stdin === undefined) channel.end();
    else if (typeof stdin === 'string' || Buffer.isBuffer(stdin)) channel.end(stdin);
    else (stdin as Readable).pipe(channel);

    const onAbort = (): void => {
      terminateCommand(channel);
      channel.close();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    // 'close' follows the end of stdout only; stderr may still hold data, so wait for both.
    let closes = 0;
    const onClosed = (): void => {
      if (++closes < 2) return;
      opts.signal?.removeEventListener('abort', onAbort);
      if (stdin !== undefined && typeof stdin !== 'string' && !Buffer.isBuffer(stdin)) {
        (stdin as Readable).unpipe(channel); // so a piped process.stdin lets the process exit
      }
      if (opts.stdout) channel.unpipe(opts.stdout);
      if (opts.stderr) channel.stderr.unpipe(opts.stderr);
      if (opts.signal?.aborted) reject(opts.signal.reason);
      else if (exit) resolve(exit);
      else reject(this.lost(command, this.lastError ?? channelError));
    };
    channel.once('close', onClosed);
    if (channel.stderr.readableEnded) onClosed();
    else channel.stderr.once('end', onClosed);
  }

  /** Run `command` and collect its output as UTF-8 text. */
  execText(command: string, opts: Omit<ExecOptions, 'stdout' | 'stderr'> = {}): Promise<ExecTextResult> {
    return collectText(this, command, opts);
  }

  /** Idempotent; waits (bounded) for the connection to close. */
  async close(): Promise<void> {
    if (this.closedFlag) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.client.destroy();
        resolve();
      }, 2000);
      this.client.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.client.end();
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private get where(): string {
    return `${this.target.user}@${hostPort(this.target.host, this.target.port)}`;
  }

  private lost(command: string, cause?: unknown): SshError {
    const why = cause instanceof Error ? `: ${cause.message}` : '';
    return new SshError('connection-lost', `${this.where}: the connection closed before "${command}" finished${why}`, undefined, { cause });
  }
}

/** Connect and log in. A host key other than the pinned one is refused, never accepted. */
export async function connect(target: SshTarget, opts: ConnectOptions = {}): Promise<SshSession> {
  return open(target, opts);
}

interface OpenOptions extends ConnectOptions {
  sock?: Socket; // already connected (waitReady opens it itself, to tell "port" from "host key")
  onHandshake?: () => void; // the host key was verified; login comes next
}

async function open(target: SshTarget, opts: OpenOptions): Promise<SshSession> {
  const pinned = parseHostKey(target.hostKey);
  const where = hostPort(target.host, target.port);
  const { Client } = (await import('ssh2')).default;
  opts.signal?.throwIfAborted();
  if (opts.sock?.destroyed) throw new SshError('handshake', `${where}: the connection closed before the SSH handshake`);
  const client = new Client();
  let offered: Buffer | undefined; // set only when the guest offered a key that is not the pinned one
  let handshook = false;

  return new Promise<SshSession>((resolve, reject) => {
    let settled = false;
    const settle = (err: Error | undefined): void => {
      if (settled) return;
      settled = true;
      opts.signal?.removeEventListener('abort', onAbort);
      client.removeListener('error', onError);
      client.removeListener('close', onClose);
      if (err === undefined) {
        resolve(new SshSession(client, target));
        return;
      }
      client.on('error', () => {}); // late errors from a connection being torn down
      client.destroy();
      reject(err);
    };
    const onAbort = (): void => settle(opts.signal!.reason as Error);
    const onError = (err: Error & { level?: string }): void => settle(classify(err, target, { offered, pinned, handshook }));
    const onClose = (): void =>
      settle(
        handshook
          ? new SshError('connection-lost', `${where}: the connection closed during login`)
          : new SshError('handshake', `${where}: the connection closed before the SSH handshake`),
      );
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    client.on('error', onError);
    client.on('close', onClose);
    client.on('handshake', () => {
      handshook = true;
      opts.onHandshake?.();
    });
    client.once('ready', () => settle(undefined));

    const config: ConnectConfig = {
      host: target.host,
      port: target.port,
      username: target.user,
      privateKey: target.privateKey,
      // The raw key blob, compared byte for byte with the pinned one. No TOFU, no fallback.
      hostVerifier: (key: Buffer): boolean => {
        if (key.equals(pinned.blob)) return true;
        offered = Buffer.from(key);
        return false;
      },
      algorithms: { serverHostKey: ['ssh-ed25519'] },
      keepaliveInterval: 15_000,
      keepaliveCountMax: 3,
      readyTimeout: opts.readyTimeoutMs ?? 20_000,
      ...(opts.sock ? { sock: opts.sock } : {}),
    };
    try {
      client.connect(config);
    } catch (err) {
      // ssh2 checks the private key synchronously
      settle(new SshError('bad-key', `the SSH client key cannot be used: ${(err as Error).message}`, undefined, { cause: err }));
    }
  });
}

function classify(
  err: Error & { level?: string; code?: string },
  target: SshTarget,
  s: { offered: Buffer | undefined; pinned: PinnedKey; handshook: boolean },
): SshError {
  const where = hostPort(target.host, target.port);
  if (s.offered) {
    return new SshError(
      'host-key-mismatch',
      `host key mismatch at ${where}: the guest offered ${fingerprint(s.offered)}, but ${fingerprint(s.pinned.blob)} is pinned`,
      `rum made this guest's host key and pinned it in the VM's known_hosts, so a different key means this ` +
        `is not the guest rum made: it may have been replaced, or another machine answers at ${where}. ` +
        `rum never accepts a changed host key; check what listens there, or recreate the VM with rum so its key is pinned again`,
      { cause: err },
    );
  }
  const cause = { cause: err };
  if (err.level === 'client-authentication') {
    return new SshError('auth', `${where}: the guest refused the key for user "${target.user}"`, undefined, cause);
  }
  if (err.level === 'client-timeout') {
    const what = s.handshook ? 'login' : 'the SSH handshake';
    return new SshError('timeout', `${where}: no answer during ${what}: ${err.message}`, undefined, cause);
  }
  if (err.level === 'client-socket') {
    return new SshError(s.handshook ? 'connection-lost' : 'unreachable', `${where}: ${err.message}`, undefined, cause);
  }
  if (!s.handshook && /^Connection lost before handshake$/.test(err.message)) {
    // what QEMU's user-mode port forward does while nothing listens in the guest yet
    return new SshError('handshake', `${where}: the connection closed before the SSH handshake`, undefined, cause);
  }
  return new SshError(s.handshook ? 'connection-lost' : 'handshake', `${where}: ${err.message}`, undefined, cause);
}

// ---------------------------------------------------------------------------------------------
// Waiting for a booting guest

export type ReadyStage = 'address' | 'port' | 'host key' | 'login' | 'cloud-init';
const STAGES: readonly ReadyStage[] = ['address', 'port', 'host key', 'login', 'cloud-init'];

/** As SshTarget, but the address may be unknown until the guest has a DHCP lease. */
export type WaitTarget = Omit<SshTarget, 'host'> & { host?: string };

export interface WaitReadyOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** Called once per stage, in order, when rum starts waiting for it. */
  onStage?: (stage: ReadyStage, detail?: string) => void;
  /** Run once logged in, e.g. `cloud-init status --wait`; its stage is 'cloud-init'. */
  command?: string;
  okExitCodes?: readonly number[]; // of `command`; default [0]
  /**
   * Asked until it gives an address (e.g. from libvirt's DHCP leases), and again whenever nothing
   * answers at that address. Not needed when `host` is given. Its own errors are not retried.
   */
  getAddress?: () => Promise<string | undefined>;
  /**
   * Asked after a failed attempt, at most every 2 s: an error to end the wait with when the guest
   * can no longer answer (stopped, paused), instead of waiting out the time bound.
   */
  guestGone?: () => Promise<Error | undefined>;
  maxAttempts?: number; // default: enough that the time bound is the one reached
  attemptTimeoutMs?: number; // one TCP connect + handshake + login; default 20 s
  retryDelayMs?: number; // the first pause between attempts; it grows to 0.5 s. Default 250 ms
}

export interface Ready {
  session: SshSession; // logged in and open: run more commands on it, then close it. session.target.host: the address used
  attempts: number;
  command?: ExecTextResult;
}

// A booting guest answers the moment sshd starts; a longer pause is added straight onto `up`
// (an attempt before then is a refused or reset TCP connection: cheap).
const MAX_RETRY_DELAY_MS = 500;

/**
 * Wait, in stages, until the guest answers: an address, the TCP port, the SSH handshake with the
 * pinned host key, login, then `command`. Everything a booting guest does is retried (refused,
 * reset, a port that accepts and closes, a user not yet created) until the time or attempt bound;
 * a host key mismatch fails at once.
 */
export async function waitReady(target: WaitTarget, opts: WaitReadyOptions): Promise<Ready> {
  parseHostKey(target.hostKey); // a malformed pin fails now, not after the timeout
  await import('ssh2'); // loaded before the first socket opens, so no event waits on a module load
  const started = Date.now();
  const deadline = started + opts.timeoutMs;
  const firstDelay = opts.retryDelayMs ?? 250;
  const maxAttempts = opts.maxAttempts ?? Math.ceil(opts.timeoutMs / firstDelay) + 10;
  const attemptTimeout = opts.attemptTimeoutMs ?? 20_000;
  let reached = -1;
  const enter = (stage: ReadyStage, detail?: string): void => {
    const i = STAGES.indexOf(stage);
    if (i > reached) {
      reached = i;
      opts.onStage?.(stage, detail);
    }
  };
  let host = target.host;
  let last: { stage: ReadyStage; error: Error } | undefined;
  let attempts = 0;
  let askedGone = started;

  while (attempts < maxAttempts && Date.now() < deadline) {
    opts.signal?.throwIfAborted();
    attempts++;
    let stage: ReadyStage = 'address';
    let session: SshSession | undefined;
    try {
      if (host === undefined) {
        enter('address');
        if (!opts.getAddress) throw new RumError('BUG', 'waitReady: no host and no getAddress');
        host = await opts.getAddress();
        if (host === undefined) throw new SshError('unreachable', 'the guest has no address yet');
      }
      const remaining = (): number => Math.max(1, deadline - Date.now());
      const full: SshTarget = { ...target, host };
      stage = 'port';
      enter('port', hostPort(host, target.port));
      const sock = await openTcp(host, target.port, Math.min(remaining(), attemptTimeout), opts.signal);
      stage = 'host key';
      enter('host key');
      session = await open(full, {
        sock,
        readyTimeoutMs: Math.min(remaining(), attemptTimeout),
        ...(opts.signal ? { signal: opts.signal } : {}),
        onHandshake: () => {
          stage = 'login';
          enter('login', target.user);
        },
      });
      if (opts.command === undefined) return { session, attempts };
      stage = 'cloud-init';
      enter('cloud-init', opts.command);
      const result = await runBounded(session, opts.command, remaining(), opts.signal);
      if ((opts.okExitCodes ?? [0]).includes(result.code as number)) return { session, attempts, command: result };
      if (result.code === null) {
        throw new SshError('connection-lost', `"${opts.command}" was ended by ${result.signal ?? 'a signal'}`);
      }
      await session.close();
      const output = lastLine(result.stderr) || lastLine(result.stdout);
      throw new SshError('command-failed', `"${opts.command}" exited with status ${result.code}${output ? `: ${output}` : ''}`, consoleHint);
    } catch (err) {
      await session?.close();
      if (opts.signal?.aborted) throw opts.signal.reason;
      if (!(err instanceof SshError) || !err.retryable) throw err;
      last = { stage, error: err };
      // Nothing at that address: it may be a stale lease, so ask again next time.
      if (stage === 'port' && opts.getAddress) host = target.host;
      if (opts.guestGone && Date.now() - askedGone >= 2000) {
        askedGone = Date.now();
        const gone = await opts.guestGone();
        if (gone) throw gone;
      }
    }
    const pause = Math.min(firstDelay * 1.5 ** (attempts - 1), MAX_RETRY_DELAY_MS, deadline - Date.now());
    if (pause > 0) {
      await sleep(pause, undefined, opts.signal ? { signal: opts.signal } : {}).catch((err: unknown) => {
        throw opts.signal?.aborted ? opts.signal.reason : err; // the caller's reason, not timers' AbortError
      });
    }
  }

  const secs = Math.round((Date.now() - started) / 100) / 10;
  const stage = last?.stage ?? STAGES[Math.max(reached, 0)]!;
  const why = last ? `: ${last.error.message}` : '';
  const bound = Date.now() >= deadline ? `timed out after ${secs} s` : `gave up after ${attempts} attempts (${secs} s)`;
  throw new SshError('timeout', `${bound} waiting for ${stage}${why}`, consoleHint, { cause: last?.error });
}

const consoleHint = 'see what the guest is doing with `rum logs --console`';

/** Run the readiness command; time it out as a retryable failure, keep a user abort as such. */
async function runBounded(session: SshSession, command: string, ms: number, signal: AbortSignal | undefined): Promise<ExecTextResult> {
  const timeout = AbortSignal.timeout(ms);
  try {
    return await session.execText(command, { signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
  } catch (err) {
    if (timeout.aborted && !signal?.aborted) throw new SshError('timeout', `"${command}" was still running`, undefined, { cause: err });
    throw err;
  }
}

/** A TCP connection, so that "nothing listens" is told apart from "listens but no SSH yet". */
function openTcp(host: string, port: number, timeoutMs: number, signal: AbortSignal | undefined): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = tcpConnect({ host, port });
    const done = (err?: Error): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      sock.removeAllListeners('connect');
      sock.removeListener('error', onError);
      if (err) {
        sock.destroy();
        reject(err);
      } else resolve(sock);
    };
    const onError = (err: Error): void => done(new SshError('unreachable', err.message, undefined, { cause: err }));
    const onAbort = (): void => done(signal!.reason as Error);
    const timer = setTimeout(() => done(new SshError('timeout', `connect to ${hostPort(host, port)}: no answer`)), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    sock.once('connect', () => done());
    sock.on('error', onError);
  });
}

// ---------------------------------------------------------------------------------------------
// One connection per target per process

/**
 * Keeps one logged-in session per target, so the execs of one rum run share a connection.
 * A closed session is replaced on the next `get`; concurrent `get`s share one connect.
 */
export class SessionPool {
  private readonly sessions = new Map<string, Promise<SshSession>>();

  async get(target: SshTarget, opts: ConnectOptions = {}): Promise<SshSession> {
    const key = poolKey(target);
    const existing = this.sessions.get(key);
    if (existing) {
      const s = await existing.catch(() => undefined);
      if (s && !s.closed) return s;
      if (this.sessions.get(key) !== existing) return this.get(target, opts); // replaced meanwhile
    }
    const p = connect(target, opts);
    this.sessions.set(key, p);
    p.catch(() => {
      if (this.sessions.get(key) === p) this.sessions.delete(key);
    });
    return p;
  }

  /** Hand a session made elsewhere (e.g. by waitReady) to the pool. */
  adopt(session: SshSession): void {
    this.sessions.set(poolKey(session.target), Promise.resolve(session));
  }

  async closeAll(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map(async (p) => (await p.catch(() => undefined))?.close()));
  }
}

function poolKey(t: SshTarget): string {
  return `${t.user}@${hostPort(t.host, t.port)} ${t.hostKey.split(/\s+/).slice(0, 2).join(' ')}`;
}

// ---------------------------------------------------------------------------------------------
// Keys and names

interface PinnedKey {
  blob: Buffer; // the SSH wire form, as a server sends it during key exchange
}

/** "ssh-ed25519 AAAA... [comment]" to its blob; anything else is refused. */
export function parseHostKey(line: string): PinnedKey {
  const [type, b64] = line.trim().split(/\s+/);
  const blob = Buffer.from(b64 ?? '', 'base64');
  // string "ssh-ed25519" (4 + 11 bytes), then string key (4 + 32 bytes)
  const ok =
    type === 'ssh-ed25519' &&
    blob.length === 51 &&
    blob.readUInt32BE(0) === 11 &&
    blob.toString('latin1', 4, 15) === 'ssh-ed25519' &&
    blob.readUInt32BE(15) === 32;
  if (!ok) {
    throw new SshError('bad-key', `the pinned host key is not an ssh-ed25519 public key: "${line.slice(0, 40)}"`);
  }
  return { blob };
}

/** OpenSSH's form: "SHA256:" and unpadded base64. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines[lines.length - 1] ?? '';
}

/** `exec` with stdout and stderr collected as UTF-8 text; for any session that can exec. */
export async function collectText(
  session: { exec(command: string, opts: ExecOptions): Promise<ExecResult> },
  command: string,
  opts: Omit<ExecOptions, 'stdout' | 'stderr'>,
): Promise<ExecTextResult> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const result = await session.exec(command, { ...opts, stdout: collector(out), stderr: collector(err) });
  return { ...result, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

function collector(into: Buffer[]): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      into.push(chunk);
      done();
    },
  });
}

/**
 * Asks the guest to end the channel's command (SIGTERM). ssh2's `channel.signal()` sends nothing once
 * our side has sent EOF, which a command without stdin has had from the start; OpenSSH's sshd
 * answers the request with killpg() on the command's process group, so `sh -c 'a | b'` ends
 * whole. Closing the channel alone ends nothing: a quiet command would run on in the guest.
 */
function terminateCommand(channel: ClientChannel): void {
  const ch = channel as unknown as { outgoing?: { id: number; state: string }; _client?: { _protocol?: { signal(id: number, s: string): void } } };
  try {
    const state = ch.outgoing?.state;
    if (state === 'open' || state === 'eof') ch._client?._protocol?.signal(ch.outgoing!.id, 'TERM');
  } catch {
    // the connection is already gone: so is the command
  }
}
