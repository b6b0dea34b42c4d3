// Owns: the unit tier's promise that nothing leaves this machine. Every unit test file imports it
// first (test/unit/no-network.test.ts checks that). A TCP connection or UDP datagram to an address
// that is not loopback, or a DNS question about a name that is not `localhost`, throws an error
// naming it, is said on stderr, and fails the file at exit even when the code under test caught
// the error. Node processes a test starts (rum through bin/rum.js) load it too, via NODE_OPTIONS,
// and report to the test's process. Unix sockets (libvirt's) and 127.0.0.1 servers are untouched.
// Not for the e2e tier: its clients run inside a network namespace of their own.
import dgram from 'node:dgram';
import dns from 'node:dns';
import dnsPromises from 'node:dns/promises';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where the processes of one test file write what they were refused. */
const LOG_VAR = 'RUM_NO_NETWORK_LOG';
const GUARDED = Symbol.for('rum.no-network');

const refused: string[] = [];
let log = process.env[LOG_VAR];
const owner = log === undefined; // the test file's own process, not one it started

/** 127.0.0.0/8, ::1, ::ffff:127.x.y.z, and the name `localhost` (from /etc/hosts, never asked of a
 * server). No other name: `foo.localhost` may well go to DNS. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  if (!net.isIPv6(h)) return false;
  try {
    const short = new URL(`http://[${h}]/`).hostname; // compressed: [::1], [::ffff:7f00:1]
    return short === '[::1]' || /^\[::ffff:7f[0-9a-f]{2}:/.test(short);
  } catch {
    return false; // a zone id (fe80::1%eth0) and the like: a real interface
  }
}

function refuse(what: string): never {
  const message = `no-network guard: ${what} refused: a unit test may use loopback and unix sockets only (test/helpers/no-network.ts)`;
  process.stderr.write(`${message}\n`);
  if (owner) refused.push(message);
  else if (log !== undefined) {
    try {
      appendFileSync(log, `${message}\n`);
    } catch {
      // The test's process has ended (a daemon outliving it): the throw below still says it.
    }
  }
  throw new Error(message);
}

/** net.Socket#connect's target, as Node reads its arguments; undefined: a unix socket. */
function tcpTarget(args: unknown[]): { host: string; port: unknown } | undefined {
  let [first, second] = args;
  if (Array.isArray(first)) [first, second] = first; // net.connect() hands over [options, callback]
  if (first !== null && typeof first === 'object') {
    const o = first as { path?: unknown; host?: unknown; port?: unknown };
    if (typeof o.path === 'string' && o.path !== '') return undefined;
    return { host: typeof o.host === 'string' && o.host !== '' ? o.host : 'localhost', port: o.port };
  }
  if (typeof first === 'string' && !(Number(first) >= 0)) return undefined; // a path, as Node tells them
  return { host: typeof second === 'string' && second !== '' ? second : 'localhost', port: first };
}

/** `wrapped` in place of `original`, keeping what hangs off it (dns.lookup's promisify shape). */
function wrap<F extends (...args: any[]) => any>(original: F, check: (args: unknown[]) => void): F {
  const wrapped = function (this: unknown, ...args: unknown[]) {
    check(args);
    return Reflect.apply(original, this, args);
  };
  for (const key of Reflect.ownKeys(original)) {
    if (key === 'length' || key === 'name' || key === 'prototype') continue;
    Object.defineProperty(wrapped, key, Object.getOwnPropertyDescriptor(original, key)!);
  }
  Object.defineProperty(wrapped, 'name', { value: original.name });
  Object.defineProperty(wrapped, GUARDED, { value: true });
  return wrapped as unknown as F;
}

function install(): void {
  const tcp = net.Socket.prototype;
  tcp.connect = wrap(tcp.connect, (args) => {
    const to = tcpTarget(args);
    if (to && !isLoopback(to.host)) refuse(`a connection to ${to.host}:${String(to.port)}`);
  });

  const udp = dgram.Socket.prototype;
  udp.connect = wrap(udp.connect, (args) => {
    const host = typeof args[1] === 'string' && args[1] !== '' ? args[1] : 'localhost';
    if (!isLoopback(host)) refuse(`a UDP connection to ${host}:${String(args[0])}`);
  });
  udp.send = wrap(udp.send, (args) => {
    const [, offset, length, port, address] = args;
    // send(msg, offset, length, port, address) or send(msg, port, address), told apart as Node
    // does; a connected socket's address was checked by connect(). No address: loopback.
    const long = Boolean(address || (port && typeof port !== 'function'));
    const [toPort, to] = long ? [port, address] : [offset, length];
    const host = typeof to === 'string' && to !== '' ? to : 'localhost';
    if (!isLoopback(host)) refuse(`a UDP datagram to ${host}:${String(toPort)}`);
  });

  // getaddrinfo() answers `localhost` from /etc/hosts and an address from its text (a server's
  // listen('0.0.0.0') looks that up); any other name may become a query to a DNS server.
  const lookupCheck = (name: string) => (args: unknown[]) => {
    const host = args[0];
    if (typeof host !== 'string' || !(isLoopback(host) || net.isIP(host) !== 0)) refuse(`${name}(${JSON.stringify(host)})`);
  };
  // The resolver functions always ask a server (c-ares reads no /etc/hosts), as reverse lookups may.
  const always = (name: string) => (args: unknown[]) => refuse(`${name}(${JSON.stringify(args[0])})`);
  const asks = (key: string) => /^(resolve|reverse|lookupService)/.test(key);
  for (const [api, label] of [
    [dns, 'dns'],
    [dnsPromises, 'dns.promises'],
  ] as const) {
    const target = api as unknown as Record<string, unknown>;
    target.lookup = wrap(api.lookup as (...a: any[]) => any, lookupCheck(`${label}.lookup`));
    for (const key of Object.keys(target)) {
      const f = target[key];
      if (asks(key) && typeof f === 'function') target[key] = wrap(f as (...a: any[]) => any, always(`${label}.${key}`));
    }
    const proto = api.Resolver.prototype as unknown as Record<string, unknown>;
    for (const key of Object.getOwnPropertyNames(proto)) {
      const f = proto[key];
      if (asks(key) && typeof f === 'function') proto[key] = wrap(f as (...a: any[]) => any, always(`${label}.Resolver#${key}`));
    }
  }
  syncBuiltinESMExports(); // `import { lookup } from 'node:dns'` elsewhere gets the wrapped one too
}

const installed = (net.Socket.prototype.connect as unknown as Record<symbol, unknown>)[GUARDED] === true;
if (!installed) {
  install();
  if (owner) {
    log = join(mkdtempSync(join(tmpdir(), 'rum-no-network-')), 'refused');
    writeFileSync(log, '');
    process.env[LOG_VAR] = log;
    // Node children (rum itself, helpers) load the guard before their own code.
    const self = `--import=${new URL(import.meta.url).href}`;
    const opts = process.env.NODE_OPTIONS ?? '';
    if (!opts.split(/\s+/).includes(self)) process.env.NODE_OPTIONS = `${opts} ${self}`.trim();
    process.on('exit', () => {
      const all = takeViolations();
      rmSync(join(log!, '..'), { recursive: true, force: true });
      if (all.length === 0) return;
      process.stderr.write(`no-network guard: this test file tried to reach the network ${all.length} time(s):\n${all.map((m) => `  ${m}\n`).join('')}`);
      process.exitCode = 1;
    });
  }
}

/** What was refused in this process and the node processes it started, forgotten once taken:
 * the guard's own test expects some. */
export function takeViolations(): string[] {
  const all = refused.splice(0);
  if (owner && log !== undefined) {
    try {
      all.push(...readFileSync(log, 'utf8').split('\n').filter(Boolean));
      writeFileSync(log, '');
    } catch {
      // gone already (at exit): nothing more to add
    }
  }
  return all;
}
