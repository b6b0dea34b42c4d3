// Owns: a local HTTP(S) server for download tests, on 127.0.0.1 only and a random port. It serves
// files with Range and If-Range, redirects, fails on demand, cuts connections after N bytes,
// and records every request. Tests never reach a real image host.
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

export interface FileRoute {
  body: Buffer | string;
  etag?: string; // sent, and compared with If-Range
  ignoreRange?: boolean; // answer every request 200 with the whole body, like a server without Range
  /** The first `times` responses send `afterBytes` body bytes (of what they would send), then drop the connection. */
  cut?: { afterBytes: number; times: number };
  /** The first `times` requests get `status` (e.g. 503) instead of the file. */
  fail?: { status: number; times: number };
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  status: number;
  bytesSent: number; // body bytes written
}

type Route = { kind: 'file'; file: FileRoute; served: number } | { kind: 'redirect'; to: string; status: number };

export class TestHttpServer {
  readonly requests: RecordedRequest[] = [];
  private readonly routes = new Map<string, Route>();
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly scheme: 'http' | 'https' = 'http',
  ) {
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  /** `tls`: serve https with this key and certificate (PEM). */
  static async start(opts: { tls?: { key: string; cert: string } } = {}): Promise<TestHttpServer> {
    let self: TestHttpServer | undefined;
    const handler = (req: import('node:http').IncomingMessage, res: ServerResponse) => self!.handle(req.method ?? 'GET', req.url ?? '/', req.headers, res);
    const server: Server = opts.tls ? createTlsServer(opts.tls, handler) : createServer(handler);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    self = new TestHttpServer(server, (server.address() as AddressInfo).port, opts.tls ? 'https' : 'http');
    return self;
  }

  /** `http(s)://127.0.0.1:<port><path>`; `path` starts with `/`. */
  url(path: string): string {
    return `${this.scheme}://127.0.0.1:${this.port}${path}`;
  }

  file(path: string, file: FileRoute): void {
    this.routes.set(path, { kind: 'file', file, served: 0 });
  }

  /** `to` may be relative, as a Location header may be. */
  redirect(path: string, to: string, status = 302): void {
    this.routes.set(path, { kind: 'redirect', to, status });
  }

  requestsFor(path: string): RecordedRequest[] {
    return this.requests.filter((r) => r.path === path);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(method: string, path: string, headers: IncomingHttpHeaders, res: ServerResponse): void {
    const rec: RecordedRequest = { method, path, headers, status: 0, bytesSent: 0 };
    this.requests.push(rec);
    const route = this.routes.get(path);
    const reply = (status: number, h: Record<string, string | number>, body: Buffer, cutAfter?: number): void => {
      rec.status = status;
      res.writeHead(status, { 'content-length': body.length, ...h });
      if (method === 'HEAD') {
        res.end();
        return;
      }
      if (cutAfter !== undefined && cutAfter < body.length) {
        const part = body.subarray(0, cutAfter);
        rec.bytesSent = part.length;
        res.write(part, () => res.socket?.destroy()); // the bytes reach the client, then the connection drops
        if (part.length === 0) res.socket?.destroy();
        return;
      }
      rec.bytesSent = body.length;
      res.end(body);
    };

    if (!route) return reply(404, {}, Buffer.from('not found\n'));
    if (route.kind === 'redirect') return reply(route.status, { location: route.to }, Buffer.alloc(0));

    const f = route.file;
    const n = route.served++;
    if (f.fail && n < f.fail.times) return reply(f.fail.status, {}, Buffer.from('failing on purpose\n'));
    const cutAfter = f.cut && n < f.cut.times ? f.cut.afterBytes : undefined;
    const body = typeof f.body === 'string' ? Buffer.from(f.body) : f.body;
    const common: Record<string, string> = { 'accept-ranges': f.ignoreRange ? 'none' : 'bytes' };
    if (f.etag) common.etag = f.etag;

    const range = /^bytes=(\d+)-(\d*)$/.exec(String(headers.range ?? ''));
    const ifRange = headers['if-range'];
    const rangeApplies = range && !f.ignoreRange && (ifRange === undefined || ifRange === f.etag);
    if (!rangeApplies) return reply(200, common, body, cutAfter);
    const start = Number(range[1]);
    const end = range[2] === '' ? body.length - 1 : Math.min(Number(range[2]), body.length - 1);
    if (start >= body.length || start > end) {
      return reply(416, { ...common, 'content-range': `bytes */${body.length}` }, Buffer.alloc(0));
    }
    const contentRange = `bytes ${start}-${end}/${body.length}`;
    return reply(206, { ...common, 'content-range': contentRange }, body.subarray(start, end + 1), cutAfter);
  }
}
