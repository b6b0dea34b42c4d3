// Owns: copying a file or a directory tree between this host and a guest as one tar stream over one
// SSH exec channel: node-tar on the host, GNU tar in the guest. Destinations behave like `cp -r`
// (into an existing directory, else under the destination's own name); modes, mtimes and symlinks
// are kept both ways. Not: which guest (the CLI resolves the target) or the `:path` syntax
// (src/cli/commands/cp.ts).
import { chmod, lstat, lutimes, readdir, stat, symlink, unlink, utimes } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { posix, resolve } from 'node:path';
import { Transform, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { Pack, UnpackSync, type ReadEntry, type WriteEntry } from 'tar';
import { RumError } from '../errors.js';
import type { GuestShell } from './control.js';
import { shellQuote } from './openssh.js';

export interface TransferProgress {
  bytes: number; // of the tar stream so far
  total?: number; // an estimate of the whole stream; known on upload once the size walk is done
}

export interface TransferOptions {
  signal?: AbortSignal;
  /** Called for every chunk: throttle in the caller. */
  onProgress?: (p: TransferProgress) => void;
}

export interface TransferResult {
  bytes: number; // of the tar stream
  path: string; // where the copy landed, as the destination side spells it
  warnings: string[]; // e.g. a guest file that changed while it was read
}

/** Paths go to the guest's shell (quoted) and to tar: a NUL or a newline has no safe meaning there. */
export function checkPath(p: string, what: string): void {
  if (/[\0\n\r]/.test(p))
    throw new RumError('USAGE', `${what} contains a NUL or newline character`, 'rename the file first; rum cp cannot pass such a name safely');
}

/** Home-relative spellings (`~`, `~/x`, empty) as the path the guest's shell starts from: its home. */
export function guestPath(p: string): string {
  checkPath(p, 'the guest path');
  if (p === '' || p === '~') return '.';
  if (p.startsWith('~/')) return p.slice(2).replace(/^\/+/, '') || '.';
  return p;
}

/** Host file or directory → guest. */
export async function upload(session: GuestShell, hostSrc: string, guestDst: string, opts: TransferOptions = {}): Promise<TransferResult> {
  checkPath(hostSrc, 'the host path');
  const dst = guestPath(guestDst);
  const st = await lstat(hostSrc).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR')
      throw new RumError('FAILED', `${hostSrc}: no such file or directory on the host`, 'paths without a leading ":" are on the host; mark the guest side as :path');
    throw hostError(hostSrc, err);
  });
  const src = split(hostSrc);
  const place = placement(guestDst, dst, await probe(session, trimSlashes(dst)), src.name, st.isDirectory(), 'guest');

  const abort = linked(opts.signal);
  const warnings: string[] = [];
  let bytes = 0;
  let total: number | undefined = st.isDirectory() ? undefined : tarSize(st);
  // Concurrent with the copy, so a large tree starts moving at once; only the progress line waits.
  if (st.isDirectory()) void treeTarSize(hostSrc).then((t) => (total = t), () => undefined);

  const pack = new Pack({
    cwd: src.dir,
    // Not `portable`: it drops directory mtimes and takes the group and other write bits off.
    onWriteEntry: (e: WriteEntry) => {
      e.path = rebase(e.path, src.name, place.name) ?? bug(e.path);
      // a hard link names another member of the archive, which was renamed the same way
      if (e.type === 'Link' && e.linkpath) e.linkpath = rebase(e.linkpath, src.name, place.name) ?? bug(e.linkpath);
    },
  });
  pack.on('error', (err: unknown) => {
    const e = err as NodeJS.ErrnoException;
    abort.abort(hostError(e.path ?? hostSrc, e));
  });
  pack.on('warn', (_code: string, message: string | Error) => warnings.push(message instanceof Error ? message.message : message));
  const counter = new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      opts.onProgress?.({ bytes, ...(total !== undefined ? { total } : {}) });
      cb(null, chunk);
    },
  });
  counter.on('error', () => {}); // only ever destroyed by us, after the copy has failed
  pack.pipe(counter);
  pack.add(src.name);
  pack.end();

  const stderr = tail();
  try {
    // -p: modes exactly, not through the guest's umask; files belong to the ssh user, as with cp.
    // node-tar writes a tree breadth first, so a directory is entered again after tar would have
    // set its mtime: --delay-directory-restore sets them all at the end instead.
    const r = await session.exec(`tar -C ${shellQuote(place.dir)} --no-same-owner --delay-directory-restore -xpf -`, {
      stdin: counter,
      stderr: stderr.stream,
      signal: abort.signal,
    });
    if (r.code !== 0) throw guestTarError('extract', r, stderr.text());
  } finally {
    pack.pause();
    counter.destroy();
  }
  return { bytes, path: landed(place), warnings };
}

/** Guest file or directory → host. */
export async function download(session: GuestShell, guestSrc: string, hostDst: string, opts: TransferOptions = {}): Promise<TransferResult> {
  checkPath(hostDst, 'the host path');
  const srcPath = guestPath(guestSrc);
  const s = await probe(session, srcPath);
  if (s.type === 'none')
    throw new RumError('FAILED', `:${guestSrc}: no such file or directory in the guest`, `relative guest paths start at the home directory of ${session.target.user}`);
  const src = split(srcPath);
  const place = placement(hostDst, hostDst, await hostProbe(trimSlashes(hostDst)), src.name, s.type === 'dir' && !s.link, 'host');

  const abort = linked(opts.signal);
  let failure: RumError | undefined;
  const fail = (err: RumError): void => {
    failure ??= err;
    abort.abort(failure);
  };
  const x = extraction(resolve(place.dir), src.name, place.name, fail);
  let bytes = 0;
  const sink = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      opts.onProgress?.({ bytes });
      if (x.unpack.write(chunk)) cb();
      else x.unpack.once('drain', () => cb());
    },
    final(cb) {
      if (failure) return cb(); // Unpack has stopped; it would never close
      let called = false;
      const done = (err?: Error): void => {
        if (!called) (called = true), cb(err);
      };
      x.unpack.once('close', () => done());
      x.unpack.once('error', done);
      x.unpack.end();
    },
  });

  const stderr = tail();
  const r = await session.exec(`tar -C ${shellQuote(src.dir)} -cf - -- ${shellQuote(src.name)}`, {
    stdout: sink,
    stderr: stderr.stream,
    signal: abort.signal,
  });
  // GNU tar's 1 on create: a file changed while it was read (a live log); what was sent is whole.
  if (r.code !== 0 && r.code !== 1) throw guestTarError('archive', r, stderr.text());
  sink.end();
  await finished(sink).catch((err: Error) => fail(failure ?? hostError(hostDst, err)));
  if (failure) throw failure;
  await x.finish();
  const warnings = [...x.warnings];
  if (r.code === 1) warnings.push(`${lastLine(stderr.text()) || 'a file changed while it was read'} (in the guest)`);
  return { bytes, path: landed(place), warnings };
}

// ---------------------------------------------------------------------------------------------
// Where a copy lands

interface Found {
  type: 'dir' | 'other' | 'none'; // 'dir' follows a symlink: copying into a linked directory is normal
  link: boolean; // the path itself is a symlink (copied as one)
  parentDir: boolean; // its parent is a directory (so a new name can be made there)
}

interface Place {
  dir: string; // the directory tar works in
  name: string; // the copy's own name in it; '.': the directory itself (contents merged)
}

/**
 * As `cp -r`: an existing directory receives the source under its own name; anything else is the
 * new name. `found` describes `dst` without its trailing slashes (which say "a directory").
 */
function placement(shown: string, dst: string, found: Found, srcName: string, srcIsDir: boolean, side: 'host' | 'guest'): Place {
  const mark = side === 'guest' ? ':' : '';
  if (found.type === 'dir') return { dir: trimSlashes(posix.normalize(dst)), name: srcName };
  if (found.type === 'other' && dst.endsWith('/'))
    throw new RumError('FAILED', `${mark}${shown}: not a directory`, 'leave out the trailing "/" to replace it');
  if (found.type === 'other' && srcIsDir)
    throw new RumError('FAILED', `cannot overwrite ${mark}${shown}, which is not a directory, with a directory`, 'remove it first, or copy to another name');
  const { dir, name } = split(dst);
  if (found.type === 'none' && !found.parentDir)
    throw new RumError('FAILED', `${mark}${dir}: no such directory on the ${side}`, 'create it first: rum cp makes only the last part of the destination');
  if (found.type === 'none' && !srcIsDir && dst.endsWith('/'))
    throw new RumError('FAILED', `${mark}${shown}: no such directory on the ${side}`, 'to copy a file under a new name, leave out the trailing "/"');
  return { dir, name };
}

function landed(p: Place): string {
  return p.name === '.' ? p.dir : posix.join(p.dir, p.name);
}

/** The directory a path is in and its own name; '.' for a path that names a directory only as `.`/`..`/`/`. */
function split(p: string): Place {
  const n = trimSlashes(posix.normalize(p));
  const name = posix.basename(n);
  if (n === '/' || name === '.' || name === '..') return { dir: n, name: '.' };
  return { dir: posix.dirname(n), name };
}

function trimSlashes(p: string): string {
  return p.length > 1 ? p.replace(/\/+$/, '') || '/' : p;
}

/** One round trip: what the guest has at `p`. */
async function probe(session: GuestShell, p: string): Promise<Found> {
  const q = shellQuote(p);
  const parent = shellQuote(split(p).dir);
  const r = await session.execText(
    `if [ -L ${q} ]; then l=1; else l=0; fi; ` +
      `if [ -d ${q} ]; then t=dir; elif [ -e ${q} ] || [ $l = 1 ]; then t=other; else t=none; fi; ` +
      `if [ -d ${parent} ]; then u=1; else u=0; fi; echo "$t $l $u"`,
  );
  const m = /^(dir|other|none) ([01]) ([01])$/m.exec(r.stdout);
  if (r.code !== 0 || !m) throw new RumError('FAILED', `cannot look at :${p} in the guest: ${lastLine(r.stderr) || `exit ${r.code}`}`);
  return { type: m[1] as Found['type'], link: m[2] === '1', parentDir: m[3] === '1' };
}

async function hostProbe(p: string): Promise<Found> {
  const [st, lst, parent] = await Promise.all([stat(p).catch(absent), lstat(p).catch(absent), stat(split(p).dir).catch(absent)]);
  return {
    type: st?.isDirectory() ? 'dir' : st || lst ? 'other' : 'none',
    link: lst?.isSymbolicLink() === true,
    parentDir: parent?.isDirectory() === true,
  };
}

function absent(err: NodeJS.ErrnoException): undefined {
  if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
  throw hostError(err.path ?? '', err);
}

/**
 * A member's path with its first part `from` (the name tar was given, or '.') renamed to `to`.
 * undefined: not under `from`, absolute, or climbing out with '..'.
 */
export function rebase(path: string, from: string, to: string): string | undefined {
  if (path.startsWith('/')) return undefined;
  const dirSlash = path.endsWith('/') ? '/' : '';
  const parts = path.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.includes('..')) return undefined;
  if (from !== '.') {
    if (parts[0] !== from) return undefined;
    parts.shift();
  }
  if (to !== '.') parts.unshift(to);
  return parts.length === 0 ? './' : parts.join('/') + dirSlash;
}

// ---------------------------------------------------------------------------------------------
// Extracting on the host

/**
 * node-tar's UnpackSync does the files, directories and hard links, with its guards against paths
 * that leave `cwd`. The sync one: the async Unpack's per-file round trips through the thread pool
 * made it 3x slower than GNU tar on a tree of small files, and rum has nothing else to do meanwhile
 * (unread data waits in the SSH window). What it does differently from `tar -xp` is finished
 * afterwards: symlinks are made last, exactly as sent (Unpack would strip an absolute target), and only where no symlink is on
 * the way; file and directory modes are set exactly (Unpack's go through the umask, and a
 * directory gets u+rwx); directory mtimes are set deepest first, after their contents.
 */
function extraction(cwd: string, from: string, to: string, fail: (err: RumError) => void) {
  const files: { abs: string; mode: number }[] = [];
  const dirs: { abs: string; mode?: number; mtime?: Date }[] = [];
  const links: { rel: string; target: string; mtime?: Date }[] = [];
  const linkPaths = new Set<string>();
  const warnings: string[] = [];
  // An archive that puts something below one of its own symlinks could write anywhere: refused.
  const underLink = (rel: string): boolean => {
    const parts = trimSlashes(rel).split('/');
    for (let i = 1; i < parts.length; i++) if (linkPaths.has(parts.slice(0, i).join('/'))) return true;
    return false;
  };
  const unexpected = (p: string) => new RumError('FAILED', `the guest's tar stream holds an unexpected member "${p}": nothing more was written`);

  const accept = (e: ReadEntry): boolean => {
    const rel = rebase(e.path, from, to);
    if (rel === undefined || underLink(rel)) return fail(unexpected(e.path)), false;
    if (e.type === 'Link') {
      const target = e.linkpath === undefined ? undefined : rebase(e.linkpath, from, to);
      if (target === undefined || underLink(target)) return fail(unexpected(e.path)), false;
      e.linkpath = target;
    }
    e.path = rel;
    const abs = resolve(cwd, rel);
    switch (e.type) {
      case 'SymbolicLink':
        links.push({ rel: trimSlashes(rel), target: e.linkpath ?? '', ...(e.mtime ? { mtime: e.mtime } : {}) });
        linkPaths.add(trimSlashes(rel));
        return false;
      case 'Directory':
        dirs.push({ abs, ...(e.mode !== undefined ? { mode: e.mode & 0o7777 } : {}), ...(e.mtime ? { mtime: e.mtime } : {}) });
        return true;
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
        if (e.mode !== undefined) files.push({ abs, mode: e.mode & 0o7777 });
        return true;
      default:
        return true; // hard links; Unpack skips devices and FIFOs with a warning
    }
  };

  const unpack = new UnpackSync({ cwd, preserveOwner: false, filter: (_p: string, e: unknown) => accept(e as ReadEntry) });
  unpack.on('warn', (code: string, message: string | Error, data: { entry?: ReadEntry }) => {
    const text = message instanceof Error ? message.message : message;
    if (code === 'TAR_ENTRY_UNSUPPORTED') warnings.push(`skipped ${data.entry?.path ?? 'a member'}: ${text}`);
    else if (code !== 'TAR_ENTRY_INFO') fail(new RumError('FAILED', `cannot write ${data.entry?.path ?? 'a file'} on the host: ${text}`));
  });
  unpack.on('error', (err: Error) => fail(new RumError('FAILED', `cannot unpack the guest's tar stream: ${err.message}`, undefined, { cause: err })));

  const finish = async (): Promise<void> => {
    for (const l of links) {
      await assertPlainDirs(cwd, l.rel);
      const abs = resolve(cwd, l.rel);
      const there = await lstat(abs).catch(absent);
      if (there?.isDirectory()) throw new RumError('FAILED', `cannot replace the directory ${abs} with a symlink`);
      if (there) await unlink(abs);
      await symlink(l.target, abs);
      if (l.mtime) await lutimes(abs, l.mtime, l.mtime);
    }
    await eachLimited(files, async (f) => {
      const st = await lstat(f.abs).catch(absent);
      if (st?.isFile() && (st.mode & 0o7777) !== f.mode) await chmod(f.abs, f.mode);
    });
    // Deepest first, so setting a directory's mode or mtime never disturbs one set already.
    for (const d of dirs.reverse()) {
      const st = await lstat(d.abs).catch(absent);
      if (!st?.isDirectory()) continue;
      if (d.mode !== undefined && (st.mode & 0o7777) !== d.mode) await chmod(d.abs, d.mode);
      if (d.mtime) await utimes(d.abs, new Date(), d.mtime);
    }
  };
  return { unpack, warnings, finish };
}

/** Every directory from `cwd` down to where `rel` goes must be a real one: a symlink there is refused. */
async function assertPlainDirs(cwd: string, rel: string): Promise<void> {
  const parts = rel.split('/').slice(0, -1);
  let p = cwd;
  for (const part of parts) {
    p = resolve(p, part);
    const st = await lstat(p).catch(absent);
    if (!st?.isDirectory()) throw new RumError('FAILED', `will not make a symlink under ${p}: it is not a plain directory`);
  }
}

async function eachLimited<T>(items: T[], fn: (item: T) => Promise<void>, limit = 32): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

// ---------------------------------------------------------------------------------------------
// Sizes, errors, plumbing

/** What a file adds to a tar stream: a header and its data in 512-byte blocks. */
function tarSize(st: Stats): number {
  return 512 + (st.isFile() ? Math.ceil(st.size / 512) * 512 : 0);
}

/** An estimate of a tree's tar stream (long names add pax headers this leaves out). */
async function treeTarSize(root: string): Promise<number> {
  let total = 1024; // the two zero blocks that end an archive
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p);
    total += tarSize(st);
    if (!st.isDirectory()) return;
    for (const name of await readdir(p)) await walk(posix.join(p, name));
  };
  await walk(root);
  return total;
}

function guestTarError(what: 'extract' | 'archive', r: { code: number | null; signal?: string }, stderr: string): RumError {
  const status = r.code === null ? `ended by ${r.signal ?? 'a signal'}` : `exit ${r.code}`;
  const why = lastLine(stderr);
  const hint =
    r.code === 127 ? 'install tar in the guest (GNU tar)'
    : /Permission denied/i.test(stderr) ? 'the guest user cannot reach that path; copy to or from a place it owns, e.g. its home directory'
    : /No space left/i.test(stderr) ? "the guest's disk is full"
    : undefined;
  return new RumError('FAILED', `tar in the guest could not ${what} (${status})${why ? `: ${why}` : ''}`, hint);
}

/** The last line that says something: GNU tar ends with a generic "Exiting with failure status". */
function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !/Exiting with failure status/.test(l));
  return lines.at(-1) ?? '';
}

function hostError(path: string, err: NodeJS.ErrnoException): RumError {
  if (err instanceof RumError) return err;
  // "EACCES: permission denied, open '/x/y'" → "permission denied": the path is said once, first
  const why = err.code ? err.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '') : err.message;
  return new RumError('FAILED', `${path}: ${why}`, undefined, { cause: err });
}

function bug(path: string): never {
  throw new Error(`rum cp: tar produced a member outside the copied tree: ${path}`);
}

/** Keeps the last 64 KiB of a stream, for the error message. */
function tail(): { stream: Writable; text: () => string } {
  let buf = Buffer.alloc(0);
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length > 65536) buf = buf.subarray(buf.length - 65536);
      cb();
    },
  });
  return { stream, text: () => buf.toString('utf8') };
}

function linked(signal: AbortSignal | undefined): AbortController {
  const c = new AbortController();
  if (signal?.aborted) c.abort(signal.reason);
  else signal?.addEventListener('abort', () => c.abort(signal.reason), { once: true });
  return c;
}
