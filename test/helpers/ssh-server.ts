// Owns: a real SSH server for tests, on 127.0.0.1 only. An ssh2 Server with its own ed25519 host
// key that lets one user in with one public key and runs exec requests with /bin/sh -c locally
// (or answers from a script). It can misbehave like a booting guest: close the first TCP
// connections at once (QEMU user networking accepts before sshd is up) and refuse the first
// logins (the user does not exist yet). It counts what it saw, so tests can assert "no retry".
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import type { Connection, ServerChannel } from 'ssh2';
import { generateValidEd25519 } from '../../src/ssh/keys.js';

const { Server, utils } = ssh2;

export interface Scripted {
  stdout?: string;
  stderr?: string;
  code: number;
}

export interface TestSshServerOptions {
  clientPublicKey: string; // "ssh-ed25519 AAAA...": the only key let in
  user?: string; // default "rum"
  port?: number; // default: any free port
  hostKey?: { private: string; public: string }; // default: a fresh ed25519 pair
  dropFirst?: number; // close this many TCP connections before any SSH is spoken
  refuseLoginFirst?: number; // refuse this many otherwise valid logins
  /** A scripted answer for a command; undefined: run it with /bin/sh -c. */
  respond?: (command: string) => Scripted | undefined;
}

export class TestSshServer {
  connections = 0; // TCP connections accepted (dropped ones too)
  logins = 0; // successful logins
  readonly commands: string[] = [];
  private readonly sockets = new Set<Socket>();
  readonly children = new Set<ChildProcess>(); // commands still running, killed by close()
  private dropped = 0;
  private refused = 0;

  private constructor(
    private readonly tcp: NetServer,
    readonly port: number,
    readonly hostKey: { private: string; public: string },
  ) {}

  static async start(opts: TestSshServerOptions): Promise<TestSshServer> {
    const hostKey = opts.hostKey ?? generateEd25519('test-host');
    const user = opts.user ?? 'rum';
    const allowed = utils.parseKey(opts.clientPublicKey);
    if (allowed instanceof Error) throw allowed;
    const ssh = new Server({ hostKeys: [hostKey.private] });
    let self: TestSshServer | undefined;

    ssh.on('connection', (client: Connection) => {
      client.on('error', () => {}); // a client going away mid-handshake is part of the tests
      client.on('authentication', (ctx) => {
        const ok =
          ctx.method === 'publickey' &&
          ctx.username === user &&
          ctx.key.algo === allowed.type &&
          ctx.key.data.equals(allowed.getPublicSSH()) &&
          (!ctx.signature || allowed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true);
        if (!ok) return ctx.reject(['publickey']);
        if (!ctx.signature) return ctx.accept(); // the client asks whether this key would do
        if (self!.refused < (opts.refuseLoginFirst ?? 0)) {
          self!.refused++;
          return ctx.reject(['publickey']);
        }
        self!.logins++;
        ctx.accept();
      });
      client.on('ready', () => {
        client.on('session', (accept) => {
          const session = accept();
          session.on('pty', (acceptPty) => acceptPty?.());
          session.on('env', (acceptEnv) => acceptEnv?.());
          session.on('exec', (acceptExec, _reject, info) => {
            self!.commands.push(info.command);
            const channel = acceptExec();
            const scripted = opts.respond?.(info.command);
            if (scripted) answer(channel, scripted);
            else self!.children.add(runLocally(channel, info.command, session, (c) => self!.children.delete(c)));
          });
        });
      });
    });

    const tcp = createServer((sock) => {
      self!.connections++;
      self!.sockets.add(sock);
      sock.on('close', () => self!.sockets.delete(sock));
      sock.on('error', () => {});
      if (self!.dropped < (opts.dropFirst ?? 0)) {
        self!.dropped++;
        sock.destroy();
        return;
      }
      ssh.injectSocket(sock);
    });
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
    });
    self = new TestSshServer(tcp, (tcp.address() as AddressInfo).port, hostKey);
    return self;
  }

  /** Ends every connection, as a guest that stops does, and keeps listening. */
  dropConnections(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    for (const c of this.children) killGroup(c, 'SIGKILL');
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.tcp.close(() => resolve()));
  }
}

export function generateEd25519(comment: string): { private: string; public: string } {
  return generateValidEd25519(utils, comment); // ssh2 alone makes an unloadable key now and then
}

/** A port that was free a moment ago (for a server started later, at a known port). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

function answer(channel: ServerChannel, s: Scripted): void {
  channel.on('error', () => {});
  channel.resume(); // stdin is not read
  if (s.stdout) channel.write(s.stdout);
  if (s.stderr) channel.stderr.write(s.stderr);
  channel.exit(s.code);
  channel.end();
}

function runLocally(channel: ServerChannel, command: string, session: NodeJS.EventEmitter, onDone: (c: ChildProcess) => void): ChildProcess {
  // Its own process group, so a signal reaches what the shell started too (sh -c 'sleep 30').
  const child = spawn('/bin/sh', ['-c', command], { stdio: 'pipe', detached: true });
  // like sshd: the command does not outlive its channel
  channel.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) killGroup(child, 'SIGHUP');
  });
  channel.on('error', () => {});
  child.stdin.on('error', () => {}); // the command may exit without reading its input
  channel.pipe(child.stdin);
  child.stdout.pipe(channel, { end: false });
  child.stderr.pipe(channel.stderr, { end: false });
  const onSignal = (accept: (() => void) | undefined, _reject: unknown, info: { name: string }): void => {
    accept?.();
    killGroup(child, `SIG${info.name}` as NodeJS.Signals);
  };
  session.on('signal', onSignal);
  child.on('error', () => {
    channel.exit(127);
    channel.end();
  });
  child.on('close', (code, signal) => {
    onDone(child);
    session.removeListener('signal', onSignal);
    if (code !== null) channel.exit(code);
    else channel.exit((signal ?? 'SIGKILL').replace(/^SIG/, ''), false, '');
    channel.end();
  });
  return child;
}

export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}
