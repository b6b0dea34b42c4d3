// Tries every way out that test/helpers/no-network.ts closes, and prints what each did as JSON.
// It does not import the guard: run with the guard's NODE_OPTIONS, it shows a node child inherits
// it. test/unit/no-network.test.ts runs it in a network namespace of its own (`unshare -n`), so
// that a broken guard finds no network either.
import dgram from 'node:dgram';
import dns, { lookup } from 'node:dns';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';

const callback = (start: (done: (err: unknown) => void) => void) => () => new Promise<void>((resolve, reject) => start((err) => (err ? reject(err) : resolve())));
const socket = (s: net.Socket) => new Promise<void>((resolve, reject) => s.on('error', reject).on('connect', () => (s.destroy(), resolve())));

const probes: Record<string, () => Promise<unknown>> = {
  'net.connect(options)': () => socket(net.connect({ host: '10.0.2.2', port: 80 })),
  'net.connect(port, host)': () => socket(net.connect(80, '10.0.2.2')),
  'new net.Socket().connect': () => socket(new net.Socket().connect(80, '10.0.2.2')),
  'tls.connect': () => socket(tls.connect({ host: '10.0.2.2', port: 443 })),
  'http.get': () => new Promise((resolve, reject) => http.get('http://10.0.2.2:80/', resolve).on('error', reject)),
  fetch: () => fetch('http://cloud.debian.org/'),
  'dns.lookup': callback((done) => dns.lookup('example.org', done)),
  'lookup imported by name': callback((done) => lookup('example.org', done)),
  'dns.promises.lookup': () => dns.promises.lookup('example.org'),
  'dns.resolve4': callback((done) => dns.resolve4('example.org', done)),
  'dns.Resolver#resolve4': callback((done) => new dns.Resolver().resolve4('example.org', done)),
  'dgram send': callback((done) => {
    const s = dgram.createSocket('udp4');
    try {
      s.send('x', 53, '10.0.2.2', (err) => (s.close(), done(err)));
    } catch (err) {
      s.close();
      throw err;
    }
  }),
};

/** The error's message, and its cause's (fetch wraps what the socket threw). */
const said = (err: unknown): string => {
  const e = err as { message?: string; cause?: unknown };
  return [e?.message ?? String(err), ...(e?.cause ? [said(e.cause)] : [])].join(' / ');
};

const outcomes: Record<string, string> = {};
for (const [name, probe] of Object.entries(probes)) {
  const limit = new Promise<string>((resolve) => setTimeout(resolve, 5_000, 'no answer in 5 s').unref());
  const tried = new Promise((resolve) => resolve(probe())); // a throw, as a rejection
  outcomes[name] = await Promise.race([tried.then(() => 'went through', said), limit]);
}
process.stdout.write(JSON.stringify(outcomes));
