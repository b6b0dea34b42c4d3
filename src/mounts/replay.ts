// Owns: the guest half of the inotify bridge: the replay program that runs in the guest, the
// bytes that carry a batch of paths to it, and one running copy of it on an SSH session.
// Not: which paths changed or when to send them (bridge.ts), or how to reach the guest.
//
// How a host change is made visible to the guest's inotify watchers, without changing a byte:
// the guest opens the file for writing (no O_CREAT, no O_TRUNC), sets its mtime, and only its
// mtime (atime UTIME_OMIT), to the value the host already has, and closes it unwritten. (In a
// burst, most files get the mtime alone: see "Cost" below.)
//  - setting mtime alone is reported as IN_MODIFY, not IN_ATTRIB (fsnotify_change in the kernel:
//    ATTR_MTIME without ATTR_ATIME). Node's fs.watch (so chokidar, vite, webpack, tsc) and the
//    notify crate (cargo watch) see a change. `touch` sets both times: IN_ATTRIB only, which
//    Lima's mountInotify settles for (lima-vm/lima#1913) and some watchers ignore.
//  - closing a file opened for writing is IN_CLOSE_WRITE, what `inotifywait -e close_write` and
//    tools built on it wait for. Nothing is written, so contents and size cannot change.
//  - the value is the host's own mtime, to the nanosecond, so editors that compare mtimes (vim,
//    VS Code, helix) do not see "changed on disk", and builds comparing mtimes are unaffected.
//    Only ctime moves. The setattr also refreshes the guest's cached attributes (virtiofs keeps
//    them up to a second), so a watcher that stats the file at once sees the new size and mtime.
//    If the guest already sees a newer mtime, nothing is set: that change has its own event coming.
//  - not truncate to the same size (IN_MODIFY too): with a stale cached size it would cut data
//    the host just appended. Not chmod to the same mode (colima did): it races with the guest's
//    own chmods (lima-vm/lima#2450).
// What cannot be replayed: IN_CREATE, IN_DELETE and IN_MOVED_* come only from changing the
// directory itself, which here is the host's: making and removing names in the user's tree to
// fake them would race with the host. So a new file gets the modify events above under its name
// (a directory watcher hears of it and rescans: chokidar reports an add), and a deletion or a
// rename's old name gets them on the parent directory, so directory watchers rescan and notice.
// A read-only mount cannot be replayed at all (EROFS): the guest may change nothing there.
//
// Python, not sh: sh cannot open without O_CREAT, set mtime alone to an exact value, or read
// NUL-separated paths. Every rum guest has python3: cloud-init is written in it.
import { PassThrough, Writable } from 'node:stream';
import { RumError } from '../errors.js';
import { shellQuote } from '../ssh/openssh.js';
import type { ExecOptions, ExecResult } from '../ssh/connect.js';

/** What the bridge needs of an SSH connection; SshSession is one. */
export interface SessionLike {
  exec(command: string, opts?: ExecOptions): Promise<ExecResult>;
  close(): Promise<void>;
  readonly closed: boolean;
}

/** One path to replay, as the guest sees it, with the mtime the host has for it. */
export interface ReplayRecord {
  path: string;
  mtimeNs: bigint;
  file: boolean; // a regular file on the host: opened for writing too
}

/** The guest's answer to one batch. */
export interface ReplayAck {
  applied: number;
  newer: number; // the guest already saw a newer mtime: that change's own event will follow
  errors: Record<string, { count: number; path: string }>; // by errno name, with one example
}

const PROTOCOL = 1;

// Records are three NUL-terminated fields: op, mtime in ns, path. "F" replays a regular file,
// "T" anything else (a directory, a symlink), "E" ends a batch and asks for its ack. Paths are
// bytes: never parsed by a shell, any name survives.
// Confinement: a path must lie under a mount root (argv) as written, and again once its parent
// directory is opened and the kernel says where that is (/proc/self/fd): a symlinked directory
// cannot lead a replay out of the mounts. The last component is never followed (O_NOFOLLOW,
// AT_SYMLINK_NOFOLLOW), and O_NONBLOCK never hangs on a FIFO.
// Cost, which under emulation (TCG) is what limits a burst: every operation on a shared file is
// a round trip to the host's file server, ~0.2 ms of emulated guest kernel each (measured, and
// the same whatever the server does). So:
//  - paths are worked through a directory at a time, relative to the open directory;
//  - where a directory has several paths in the batch, it is read (a bounded part of it) and each
//    name replayed as the listing reaches it: virtiofs answers a listing with readdirplus, which
//    refreshes the names and attributes it lists, so the replay needs no lookup of its own
//    (10,000 files: 3.8 s by name, 2.4 s this way);
//  - a batch up to WRITE_MAX paths is replayed as a write: open, set mtime through the
//    descriptor, close (IN_OPEN, IN_MODIFY, IN_CLOSE_WRITE, as a real write gives). A larger
//    one (a checkout) sets the mtime by name: IN_MODIFY, which fs.watch, chokidar, the notify
//    crate and watchdog all act on, at a third of the cost (open and close are two more round
//    trips); the last file of each directory still gets open and close, so a watcher waiting
//    for IN_CLOSE_WRITE hears of every directory the burst changed;
//  - a large batch is shared among forked workers, one per guest CPU (at most 4): requests in
//    flight together overlap their waits. Threads did not help (the GIL's hand-offs between
//    CPUs cost more than they saved).
const SCRIPT = String.raw`
import ctypes, errno, json, marshal, os, struct, sys
# As written (what the host sends) and resolved (what /proc/self/fd says): a mount under a
# symlinked directory (/home -> var/home) must match both ways.
roots = sorted({os.fsencode(r).rstrip(b'/') or b'/' for r in sys.argv[1:]} | {os.path.realpath(os.fsencode(r)) for r in sys.argv[1:]})
OMIT = (1 << 30) - 2
WRITE_MAX = 256
SCAN_MIN = 4
SCAN_PER_PATH = 12  # entries read per wanted path at most: a listing entry costs ~1/12 of a lookup
O_FILE = os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
O_DIR = os.O_DIRECTORY | os.O_CLOEXEC
try:
    libc = ctypes.CDLL(None, use_errno=True)
    class TS(ctypes.Structure):
        _fields_ = [('s', ctypes.c_long), ('ns', ctypes.c_long)]
    def check(r):
        if r != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    tv = (TS * 2)(TS(0, OMIT), TS(0, 0))  # one buffer, refilled: building one per call showed in profiles
    mtime = tv[1]
    def set_mtime(dfd, name, fd, ns, st):
        mtime.s, mtime.ns = divmod(ns, 1000000000)
        if fd is None:
            check(libc.utimensat(dfd, name, tv, 0x100))
        else:
            check(libc.futimens(fd, tv))
except Exception:
    # No ctypes: both times set, so IN_ATTRIB rather than IN_MODIFY. Still a wake-up.
    def set_mtime(dfd, name, fd, ns, st):
        if fd is None:
            os.utime(name, ns=(st.st_atime_ns, ns), dir_fd=dfd, follow_symlinks=False)
        else:
            os.utime(fd, ns=(st.st_atime_ns, ns))
prefixes = tuple(r.rstrip(b'/') + b'/' for r in roots)
def inside(p):
    return (p in roots or p.startswith(prefixes)) and b'/../' not in p + b'/'
def ename(e):
    return errno.errorcode.get(e.errno, str(e.errno))
def one(dfd, rec, write):
    op, ns, name, p = rec
    fd = None
    try:
        if op == b'F' and write:
            try:
                fd = os.open(name, O_FILE, dir_fd=dfd)
            except OSError as e:
                if e.errno == errno.ENOENT:
                    raise
        st = os.fstat(fd) if fd is not None else os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if st.st_mtime_ns > ns:
            return 'newer', p
        set_mtime(dfd, name, fd, ns, st)
        return 'applied', p
    except OSError as e:
        return ename(e), p
    finally:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass # released anyway; virtiofsd's flush can fail (EBADF) under a write burst
def directory(d, recs, write_all, out):
    # Listed only in a burst: a small batch (an editor's save) gives the directory no
    # IN_OPEN/IN_CLOSE_NOWRITE, which an O_PATH open does not raise.
    scan = not write_all and len(recs) >= SCAN_MIN
    try:
        try:
            dfd = os.open(d, O_DIR | (os.O_RDONLY if scan else os.O_PATH))
        except PermissionError:
            if not scan:
                raise
            scan = False  # searchable but not readable: by name, then
            dfd = os.open(d, O_DIR | os.O_PATH)
    except OSError as e:
        out.extend((ename(e), r[3]) for r in recs)
        return
    try:
        try:
            real = os.readlink(b'/proc/self/fd/%d' % dfd)
        except OSError:
            real = os.path.realpath(d)
        if inside(real):
            todo = recs  # names have no '/', and none is '..' (inside(p) saw to that)
        else:  # the parent of a mount root: only the root itself
            todo = []
            for r in recs:
                if inside(os.path.join(real, r[2])):
                    todo.append(r)
                else:
                    out.append(('outside the mounts', r[3]))
        last = todo[-1][2] if todo and not write_all else None
        if scan and len(todo) >= SCAN_MIN:
            want = {}
            for r in todo:
                want.setdefault(r[2], []).append(r)  # a path twice in a batch: a result for each
            budget = SCAN_PER_PATH * len(todo)
            try:
                with os.scandir(dfd) as it:
                    for e in it:
                        for r in want.pop(os.fsencode(e.name), ()):
                            out.append(one(dfd, r, r[2] == last))
                        if not want:
                            break
                        budget -= 1
                        if budget <= 0:
                            break
            except OSError:
                pass  # a listing that fails (EIO, ESTALE) leaves the rest to be replayed by name
            todo = [r for rs in want.values() for r in rs]
        for r in todo:
            out.append(one(dfd, r, write_all or r[2] == last))
    finally:
        os.close(dfd)
def work(write_all, groups):
    out = []
    for d, recs in groups:
        directory(d, recs, write_all, out)
    return out
def send(fd, data):
    data = struct.pack('!I', len(data)) + data
    while data:
        data = data[os.write(fd, data):]
def recv(fd):
    def exactly(n):
        buf = b''
        while len(buf) < n:
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf
    return exactly(struct.unpack('!I', exactly(4))[0])
workers = None
def start_workers():
    out = []
    for _ in range(min(len(os.sched_getaffinity(0)), 4) - 1):
        down, up = os.pipe(), os.pipe()
        pid = os.fork()
        if pid == 0:
            # A worker: its own pipes only, and it ends when the program does (EOF on down).
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.close(down[1])
            os.close(up[0])
            for a, b in out:
                os.close(a)
                os.close(b)
            try:
                while True:
                    send(up[1], marshal.dumps(work(*marshal.loads(recv(down[0])))))
            except EOFError:
                os._exit(0)
            except BaseException:
                # Never unwind into the parent's code: the program sees EOF and ends, and the
                # bridge starts it again.
                import traceback
                traceback.print_exc()
                os._exit(1)
        os.close(down[0])
        os.close(up[1])
        out.append((down[1], up[0]))
    return out
def run(batch):
    global workers
    out = []
    groups = {}
    for op, ns, p in batch:
        if inside(p):
            d, _, name = p.rpartition(b'/')
            groups.setdefault(d or b'/', []).append((op, ns, name, p))
        else:
            out.append(('outside the mounts', p))
    groups = sorted(groups.items(), key=lambda g: -len(g[1]))
    if len(batch) <= WRITE_MAX:
        return out + work(True, groups)
    if workers is None:
        workers = start_workers()
    shares = [[] for _ in range(len(workers) + 1)]
    sizes = [0] * len(shares)
    for g in groups:  # largest first, each to the least loaded
        i = sizes.index(min(sizes))
        shares[i].append(g)
        sizes[i] += len(g[1])
    for (down, _), share in zip(workers, shares[1:]):
        send(down, marshal.dumps((False, share)))
    out += work(False, shares[0])
    for _, up in workers:
        out += marshal.loads(recv(up))
    return out
out = sys.stdout.buffer
out.write(b'ready %d %d\n' % (${PROTOCOL}, os.getuid()))
out.flush()
rest = b''
fields = []
batch = []
while True:
    chunk = os.read(0, 262144)
    if not chunk:
        break
    parts = (rest + chunk).split(b'\0')
    rest = parts.pop()
    for f in parts:
        fields.append(f)
        if len(fields) < 3:
            continue
        op, arg, p = fields
        fields = []
        if op != b'E':
            batch.append((op, int(arg), p))
            continue
        ack = {'applied': 0, 'newer': 0, 'errors': {}}
        for what, p in run(batch):
            if what in ack:
                ack[what] += 1
            else:
                e = ack['errors'].setdefault(what, {'count': 0, 'path': os.fsdecode(p)})
                e['count'] += 1
        batch = []
        out.write(json.dumps(ack).encode() + b'\n')
        out.flush()
`;

/**
 * The command that starts the replay program, confined to these guest directories. As root
 * when the guest user may sudo without a password (rum's user may): setting a file's mtime needs
 * its owner or root, and the program only ever restores the host's own mtime.
 */
export function replayCommand(roots: readonly string[]): string {
  const program = ['python3', '-c', shellQuote(SCRIPT), '--', ...roots.map(shellQuote)].join(' ');
  return `if sudo -n true 2>/dev/null; then exec sudo -n ${program}; else exec ${program}; fi`;
}

export function encodeBatch(records: readonly ReplayRecord[]): Buffer {
  const parts: Buffer[] = [];
  for (const r of records) parts.push(Buffer.from(`${r.file ? 'F' : 'T'}\0${r.mtimeNs}\0${r.path}\0`, 'utf8'));
  parts.push(Buffer.from('E\0\0\0'));
  return Buffer.concat(parts);
}

export interface ReplayerOptions {
  readyTimeoutMs?: number; // default 30 s: python's start on a slow guest
}

/**
 * One running replay program on a session. Batches go in order, one ack each. When the program
 * or the connection ends, every waiting send rejects and `ended` resolves with the reason.
 */
export class GuestReplayer {
  readonly uid: number;
  readonly ended: Promise<Error>;
  private readonly waiters: { resolve: (a: ReplayAck) => void; reject: (e: Error) => void }[] = [];
  private endReason: Error | undefined;

  private constructor(
    private readonly stdin: PassThrough,
    uid: number,
    ended: Promise<Error>,
    private readonly lines: LineSink,
  ) {
    this.uid = uid;
    this.ended = ended;
    lines.onLine = (line) => this.onAck(line);
    void ended.then((err) => {
      this.endReason = err;
      for (const w of this.waiters.splice(0)) w.reject(err);
    });
  }

  static async start(session: SessionLike, roots: readonly string[], opts: ReplayerOptions = {}): Promise<GuestReplayer> {
    const stdin = new PassThrough();
    const lines = new LineSink();
    const stderr = new LineSink();
    const running = session.exec(replayCommand(roots), { stdin, stdout: lines, stderr });
    const ended = running.then(
      (r) => exitError(r, stderr.tail()),
      (err: unknown) => lostError(err),
    );
    let timer: NodeJS.Timeout | undefined;
    try {
      const first = await Promise.race([
        lines.next(),
        ended.then((err) => Promise.reject(err)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new RumError('SSH', 'the guest did not start the inotify replay program in time')),
            opts.readyTimeoutMs ?? 30_000,
          );
        }),
      ]);
      const m = /^ready (\d+) (\d+)$/.exec(first);
      if (!m || Number(m[1]) !== PROTOCOL) throw new RumError('BUG', `the guest's replay program said "${first.slice(0, 80)}"`);
      return new GuestReplayer(stdin, Number(m[2]), ended, lines);
    } catch (err) {
      stdin.end();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Replay one batch; resolves with the guest's ack. */
  send(records: readonly ReplayRecord[], timeoutMs = 30_000): Promise<ReplayAck> {
    if (this.endReason) return Promise.reject(this.endReason);
    return new Promise<ReplayAck>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new RumError('SSH', `the guest did not answer a batch of ${records.length} paths within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        resolve: (a: ReplayAck) => (clearTimeout(timer), resolve(a)),
        reject: (e: Error) => (clearTimeout(timer), reject(e)),
      };
      this.waiters.push(waiter);
      this.stdin.write(encodeBatch(records));
    });
  }

  /** End the program (EOF on its stdin); waits, bounded, for it to exit. */
  async close(timeoutMs = 2000): Promise<void> {
    this.stdin.end();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.ended, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  private onAck(line: string): void {
    const w = this.waiters.shift();
    if (!w) return; // an answer nobody waits for any more (its send timed out)
    try {
      const a = JSON.parse(line) as ReplayAck;
      w.resolve({ applied: a.applied, newer: a.newer, errors: a.errors ?? {} });
    } catch {
      w.reject(new RumError('BUG', `the guest's replay program answered "${line.slice(0, 80)}"`));
    }
  }
}

/** The session's own message quotes the whole command, which here is the program's text. */
function lostError(err: unknown): Error {
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  const why = cause instanceof Error ? `: ${cause.message}` : '';
  return new RumError('SSH', `the connection to the guest closed${why}`, undefined, { cause: err });
}

function exitError(r: ExecResult, stderr: string): Error {
  if (r.code === 127 || /python3: (?:command )?not found|No such file/.test(stderr)) {
    return new RumError(
      'TOOL_MISSING',
      'the inotify bridge needs python3 in the guest',
      'cloud images have it (cloud-init is written in Python); install python3 in the guest',
    );
  }
  const how = r.code === null ? `was ended by ${r.signal ?? 'a signal'}` : `exited with status ${r.code}`;
  return new RumError('SSH', `the guest's inotify replay program ${how}${stderr ? `: ${stderr}` : ''}`);
}

/** Splits what it is written into lines; keeps the last few for error messages. */
class LineSink extends Writable {
  onLine: ((line: string) => void) | undefined;
  private partial = '';
  private readonly queued: string[] = [];
  private readonly recent: string[] = [];
  private wake: (() => void) | undefined;

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    const parts = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) {
      this.recent.push(line);
      if (this.recent.length > 5) this.recent.shift();
      if (this.onLine) this.onLine(line);
      else this.queued.push(line);
    }
    this.wake?.();
    done();
  }

  /** The next line, before onLine is set (the ready line). */
  async next(): Promise<string> {
    while (this.queued.length === 0) await new Promise<void>((r) => (this.wake = r));
    return this.queued.shift()!;
  }

  tail(): string {
    return [...this.recent, this.partial].filter(Boolean).join(' ').trim().slice(-400);
  }
}
