// Owns: the host half of the inotify bridge: watching each mount's host directory, folding
// changes into batches, telling a replay's echo from a real change, and keeping one connection
// to the guest alive across reboots. Not: what the guest does with a path (replay.ts), what an
// ignore: pattern matches (ignore.ts), rum.yaml, or wording anything for the user (the CLI
// renders BridgeEvent).
import { lstatSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { dirname, posix, relative } from 'node:path';
import { watch as chokidarWatch, type FSWatcher } from 'chokidar';
import { RumError } from '../errors.js';
import { compileIgnore, type IgnoreMatcher } from './ignore.js';
import { GuestReplayer, type ReplayAck, type ReplayRecord, type SessionLike } from './replay.js';

export type { SessionLike } from './replay.js';

export interface BridgeMount {
  hostPath: string; // absolute
  guestPath: string; // where the guest mounts it
  ignore?: readonly string[]; // .gitignore-style, relative to hostPath
}

export interface ReconnectPolicy {
  maxAttempts?: number; // default 120
  maxOutageMs?: number; // default 10 min: a guest that is rebuilt or upgraded takes a while
  initialDelayMs?: number; // default 250, doubling
  maxDelayMs?: number; // default 5 s
}

export interface BridgeOptions {
  mounts: readonly BridgeMount[];
  /** A fresh logged-in session; called again after the connection is lost. */
  connect: () => Promise<SessionLike>;
  onEvent?: (e: BridgeEvent) => void;
  debounceMs?: number; // quiet time that ends a batch; default 50
  maxWaitMs?: number; // a batch leaves at the latest this long after its first change; default 200
  maxBatch?: number; // paths per round trip; default 2000
  maxPendingWhileAway?: number; // distinct paths kept while the guest is away; default 50,000
  ackTimeoutMs?: number; // default 30 s
  reconnect?: ReconnectPolicy;
}

/** Everything the bridge has to say; the CLI words it. */
export type BridgeEvent =
  | { type: 'ready'; mounts: number; uid: number } // watching, and the guest's replay program runs as uid
  | { type: 'batch'; events: number; records: number; paths: string[]; ms: number; ack: ReplayAck }
  | { type: 'disconnected'; error: Error; pending: number }
  | { type: 'reconnecting'; attempt: number; delayMs: number; error: Error }
  | { type: 'reconnected'; attempts: number; outageMs: number; pending: number }
  | { type: 'dropped'; paths: number } // changes made while the guest was away, beyond maxPendingWhileAway
  | { type: 'watch-error'; error: Error & { code?: string } } // e.g. ENOSPC: out of inotify watches on the host
  | { type: 'failed'; error: Error }; // gave up reconnecting; `done` rejects with the same error

export interface BridgeStats {
  events: number; // host changes seen (after ignore patterns)
  suppressed: number; // host changes that were only the echo of a replay
  batches: number;
  records: number; // paths replayed
  roundTrips: number; // exchanges with the guest: one per batch, one per start of the replay program
  reconnects: number;
  dropped: number;
}

export interface Bridge {
  stats(): BridgeStats;
  /** Resolves when closed; rejects when the bridge gives up on the guest. */
  readonly done: Promise<void>;
  close(): Promise<void>;
}

interface MountState {
  root: string; // realpath of hostPath
  guest: string;
  ignored: IgnoreMatcher;
}

interface Link {
  session: SessionLike;
  replayer: GuestReplayer;
}

interface Resolved {
  hostPath: string;
  sig: string;
  record: ReplayRecord;
}

/** Watch the mounts and replay their changes in the guest until closed. */
export async function startBridge(opts: BridgeOptions): Promise<Bridge> {
  const mounts = await Promise.all(
    opts.mounts.map(async (m): Promise<MountState> => {
      const root = await realpath(m.hostPath).catch((err: NodeJS.ErrnoException) => {
        throw new RumError('FAILED', `cannot watch ${m.hostPath}: ${err.code ?? err.message}`, 'the mount source must be an existing directory');
      });
      return { root, guest: m.guestPath.replace(/\/+$/, '') || '/', ignored: compileIgnore(m.ignore ?? []) };
    }),
  );
  const bridge = new InotifyBridge(mounts, opts);
  await bridge.start();
  return bridge;
}

// Replayed paths whose echo is recognised: ~100 bytes each, a large tree's worth.
const REMEMBERED = 200_000;

class InotifyBridge implements Bridge {
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private rejectDone!: (err: Error) => void;
  private readonly counters: BridgeStats = { events: 0, suppressed: 0, batches: 0, records: 0, roundTrips: 0, reconnects: 0, dropped: 0 };
  private readonly watchers: FSWatcher[] = [];
  private readonly pending = new Map<string, MountState>(); // host path → its mount; insertion order
  private eventsSinceBatch = 0;
  private droppedWhileAway = 0;
  // Per host path: what the file looked like when it was last replayed. A host event that finds
  // it unchanged is the replay's own echo (9p and virtiofs pass the guest's setattr back to the
  // host file: its ctime moves, and the host watcher reports a change). ctime is left out of the
  // comparison for that reason. A change the guest made itself also comes back as a host event;
  // replaying it gives the guest's watchers one extra event, and its echo ends here too.
  // An echo is recognised however late it comes: in a long burst the echoes of the first batches
  // arrive seconds later, and a time window let them replay again, and their echoes again, for
  // as long as the bridge ran (measured: 2,000 records every 4 s, ten minutes on).
  private readonly replayed = new Map<string, string>(); // oldest first, at most REMEMBERED
  private link: Link | undefined;
  private timer: NodeJS.Timeout | undefined;
  private firstPendingAt: number | undefined;
  private flushing = false;
  private closed = false;
  private readonly stopping = new AbortController();
  private readonly debounceMs: number;
  private readonly maxWaitMs: number;
  private readonly maxBatch: number;
  private readonly maxPendingWhileAway: number;
  private readonly ackTimeoutMs: number;

  constructor(
    private readonly mounts: MountState[],
    private readonly opts: BridgeOptions,
  ) {
    this.debounceMs = opts.debounceMs ?? 50;
    this.maxWaitMs = opts.maxWaitMs ?? 200;
    this.maxBatch = opts.maxBatch ?? 2000;
    this.maxPendingWhileAway = opts.maxPendingWhileAway ?? 50_000;
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 30_000;
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => {}); // a caller that never awaits `done` must not crash the process
  }

  stats(): BridgeStats {
    return { ...this.counters };
  }

  async start(): Promise<void> {
    // The first connection is not retried: a guest that is not up is for the user to fix.
    const [linked, watched] = await Promise.allSettled([this.open(), Promise.all(this.mounts.map((m) => this.watch(m)))]);
    if (linked.status === 'rejected' || watched.status === 'rejected') {
      this.closed = true;
      await Promise.all(this.watchers.map((w) => w.close()));
      if (linked.status === 'fulfilled') await closeLink(linked.value);
      throw linked.status === 'rejected' ? linked.reason : (watched as PromiseRejectedResult).reason;
    }
    this.adopt(linked.value);
    this.emit({ type: 'ready', mounts: this.mounts.length, uid: linked.value.replayer.uid });
    if (this.pending.size > 0) this.schedule();
  }

  async close(): Promise<void> {
    if (await this.shutdown()) this.resolveDone();
    else await this.done.catch(() => {});
  }

  /** Stops everything once; false when it was already stopped. */
  private async shutdown(): Promise<boolean> {
    if (this.closed) return false;
    this.closed = true;
    this.stopping.abort();
    clearTimeout(this.timer);
    const link = this.link;
    this.link = undefined;
    await Promise.all([...this.watchers.map((w) => w.close()), link && closeLink(link)]);
    return true;
  }

  // ---- host side ----

  private async watch(m: MountState): Promise<void> {
    const w = chokidarWatch(m.root, {
      ignoreInitial: true,
      followSymlinks: false, // a link's target may lie outside the mount; the guest sees the link
      atomic: false, // delete-then-create within a batch is coalesced here, by path
      ignorePermissionErrors: true,
      ignored: (path: string, stats?: { isDirectory(): boolean }) => m.ignored(below(m.root, path), stats?.isDirectory()),
    });
    this.watchers.push(w);
    w.on('all', (event, path) => {
      if (m.ignored(below(m.root, path), event === 'addDir' || event === 'unlinkDir')) return;
      this.onHostEvent(m, path);
    });
    w.on('error', (err) => this.emit({ type: 'watch-error', error: err as Error }));
    await new Promise<void>((resolve) => w.once('ready', resolve));
  }

  private onHostEvent(m: MountState, path: string): void {
    if (this.closed) return;
    this.counters.events++;
    this.eventsSinceBatch++;
    if (!this.pending.has(path)) {
      if (!this.link && this.pending.size >= this.maxPendingWhileAway) {
        // Replaying a flood after a long outage helps nobody: the rebooted guest's watchers
        // have rescanned anyway. Say how much was let go.
        this.droppedWhileAway += this.pending.size;
        this.counters.dropped += this.pending.size;
        this.pending.clear();
      }
      this.pending.set(path, m);
    }
    if (this.link) this.schedule();
  }

  /** A trailing debounce, capped: one edit leaves after debounceMs, a long burst every maxWaitMs. */
  private schedule(): void {
    const now = Date.now();
    this.firstPendingAt ??= now;
    clearTimeout(this.timer);
    const due = Math.min(now + this.debounceMs, this.firstPendingAt + this.maxWaitMs);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.firstPendingAt = undefined;
      void this.flush();
    }, Math.max(0, due - now));
  }

  // ---- batches ----

  private async flush(): Promise<void> {
    if (this.flushing) return; // the running flush reschedules what arrives meanwhile
    this.flushing = true;
    try {
      while (this.pending.size > 0 && this.link && !this.closed) {
        const link = this.link;
        const chunk = [...take(this.pending, this.maxBatch)];
        const events = this.eventsSinceBatch;
        this.eventsSinceBatch = 0;
        const resolved = this.resolve(chunk);
        if (resolved.length > 0 && !(await this.send(link, chunk, resolved, events))) return;
        // Only full batches go at once; a smaller remainder waits for the burst to settle, so a
        // fast guest does not turn a long burst into many tiny round trips.
        if (this.pending.size > 0 && this.pending.size < this.maxBatch) {
          this.schedule();
          return;
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  private async send(link: Link, chunk: [string, MountState][], resolved: Resolved[], events: number): Promise<boolean> {
    const started = performance.now();
    for (const r of resolved) this.remember(r.hostPath, r.sig); // before the echo can come
    try {
      const ack = await link.replayer.send(
        resolved.map((r) => r.record),
        this.ackTimeoutMs,
      );
      this.counters.batches++;
      this.counters.roundTrips++;
      this.counters.records += resolved.length;
      const ms = Math.round(performance.now() - started);
      this.emit({ type: 'batch', events, records: resolved.length, paths: resolved.map((r) => r.record.path), ms, ack });
      return true;
    } catch (err) {
      for (const r of resolved) this.replayed.delete(r.hostPath);
      for (const [path, m] of chunk) if (!this.pending.has(path)) this.pending.set(path, m); // after reconnect
      this.eventsSinceBatch += events;
      this.lost(link, err as Error);
      return false;
    }
  }

  /**
   * Host paths to records: the host's mtime now, the nearest existing directory for a path that
   * is gone (its watchers rescan and notice), and no record for a replay's echo.
   */
  private resolve(chunk: [string, MountState][]): Resolved[] {
    const out = new Map<string, Resolved>();
    for (const [path, m] of chunk) {
      // Synchronous on purpose: at most maxBatch stats (~15 ms for 2,000), where the promise
      // form would queue behind chokidar's own thousands of stats in libuv's thread pool.
      let p = path;
      let st = lstatSync(p, { bigint: true, throwIfNoEntry: false });
      while (!st && p !== m.root && p.startsWith(`${m.root}/`)) {
        p = dirname(p);
        st = lstatSync(p, { bigint: true, throwIfNoEntry: false });
      }
      if (!st || out.has(p)) continue; // the mount itself went away, or already in this batch
      const sig = `${st.mtimeNs}:${st.size}:${st.mode}:${st.ino}`;
      if (this.replayed.get(p) === sig) {
        this.counters.suppressed++;
        continue;
      }
      out.set(p, { hostPath: p, sig, record: { path: guestPathOf(m, p), mtimeNs: st.mtimeNs, file: st.isFile() } });
    }
    return [...out.values()];
  }

  /** A forgotten path costs at most one needless replay, whose echo is then remembered. */
  private remember(path: string, sig: string): void {
    this.replayed.delete(path); // to the end: the oldest go first
    this.replayed.set(path, sig);
    if (this.replayed.size > REMEMBERED) this.replayed.delete(this.replayed.keys().next().value!);
  }

  // ---- the connection ----

  private async open(): Promise<Link> {
    const session = await this.opts.connect();
    try {
      const replayer = await GuestReplayer.start(session, this.mounts.map((m) => m.guest));
      this.counters.roundTrips++;
      return { session, replayer };
    } catch (err) {
      await session.close().catch(() => {});
      throw err;
    }
  }

  private adopt(link: Link): void {
    this.link = link;
    // The program or the connection may end while nothing is being sent: a guest reboot.
    void link.replayer.ended.then((err) => this.lost(link, err));
  }

  private lost(link: Link, err: Error): void {
    if (this.closed || this.link !== link) return;
    this.link = undefined;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.firstPendingAt = undefined;
    void closeLink(link);
    this.emit({ type: 'disconnected', error: err, pending: this.pending.size });
    void this.reconnect(err);
  }

  private async reconnect(cause: Error): Promise<void> {
    const p = this.opts.reconnect ?? {};
    const maxAttempts = p.maxAttempts ?? 120;
    const maxOutageMs = p.maxOutageMs ?? 600_000;
    const maxDelayMs = p.maxDelayMs ?? 5000;
    const since = Date.now();
    let delay = p.initialDelayMs ?? 250;
    let last = cause;
    for (let attempt = 1; ; attempt++) {
      if (this.closed) return;
      if (attempt > maxAttempts || Date.now() - since > maxOutageMs) {
        const s = Math.round((Date.now() - since) / 1000);
        return this.fail(
          new RumError(
            'SSH',
            `lost the guest and could not reconnect (${attempt - 1} attempts in ${s} s): ${last.message}`,
            'is the VM running? `rum up` starts it; then run `rum watch` again',
            { cause: last },
          ),
        );
      }
      this.emit({ type: 'reconnecting', attempt, delayMs: delay, error: last });
      try {
        await sleepUnlessStopped(delay, this.stopping.signal);
        if (this.closed) return;
        const link = await this.open();
        if (this.closed) return void closeLink(link);
        this.counters.reconnects++;
        this.adopt(link);
        this.emit({ type: 'reconnected', attempts: attempt, outageMs: Date.now() - since, pending: this.pending.size });
        if (this.droppedWhileAway > 0) {
          this.emit({ type: 'dropped', paths: this.droppedWhileAway });
          this.droppedWhileAway = 0;
        }
        if (this.pending.size > 0) this.schedule();
        return;
      } catch (err) {
        if (this.closed) return;
        last = err as Error;
        if (!retryable(err)) return this.fail(last);
        delay = Math.min(delay * 2, maxDelayMs);
      }
    }
  }

  private async fail(err: Error): Promise<void> {
    if (this.closed) return;
    this.emit({ type: 'failed', error: err });
    if (await this.shutdown()) this.rejectDone(err);
  }

  private emit(e: BridgeEvent): void {
    try {
      this.opts.onEvent?.(e);
    } catch {
      // a listener's failure is not the bridge's
    }
  }
}

async function closeLink(link: Link): Promise<void> {
  await link.replayer.close().catch(() => {});
  await link.session.close().catch(() => {});
}

/**
 * A path's place under root. chokidar asks `ignored` of every entry each time it rereads a
 * directory, tens of thousands of times in a burst: path.relative's normalising showed in profiles.
 */
function below(root: string, path: string): string {
  if (path.length > root.length && path.startsWith(root) && path[root.length] === '/') return path.slice(root.length + 1);
  return relative(root, path);
}

function guestPathOf(m: MountState, hostPath: string): string {
  const rel = below(m.root, hostPath);
  return rel === '' ? m.guest : posix.join(m.guest, rel);
}

/** A wrong key, a missing python3 or a protocol mismatch will not get better by retrying. */
function retryable(err: unknown): boolean {
  const r = (err as { retryable?: unknown } | undefined)?.retryable;
  if (typeof r === 'boolean') return r;
  if (err instanceof RumError) return err.code === 'SSH';
  return true;
}

function* take<K, V>(map: Map<K, V>, n: number): Generator<[K, V]> {
  for (const [k, v] of map) {
    if (n-- <= 0) return;
    map.delete(k);
    yield [k, v];
  }
}

async function sleepUnlessStopped(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
