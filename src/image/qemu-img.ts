// Owns: running qemu-img and turning its JSON into types; its failures into RumError.
// Not: deciding when an overlay is made or resized (tasks/overlay.ts).
import { dirname, resolve } from 'node:path';
import { execa, ExecaError } from 'execa';
import { RumError } from '../errors.js';
import { seeDoctor } from '../host/check.js';

export type ImageFormat = 'qcow2' | 'raw' | (string & {});

export interface ImageInfo {
  format: ImageFormat;
  virtualSize: number; // bytes the guest sees
  actualSize?: number; // bytes the file takes on the host
  backingFile?: string; // as written in the image (may be relative to it)
  backingFormat?: string;
  dataFile?: string; // qcow2 only: an external file holding the guest data, as written in the image
  corrupt?: boolean; // qcow2 only: QEMU found an inconsistency and marked the image
}

export interface CheckResult {
  ok: boolean;
  message: string;
}

/**
 * What qemu-img makes of a file. `--force-share`: a base image is usually open (read-only) in a
 * running VM, and reading its header must not need a lock.
 */
export async function imageInfo(path: string): Promise<ImageInfo> {
  const out = await qemuImg(['info', '--force-share', '--output=json', '--', path]);
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(out.stdout) as Record<string, unknown>;
  } catch (err) {
    throw new RumError('IMAGE', `qemu-img info ${path}: unreadable output`, undefined, { cause: err });
  }
  if (typeof j.format !== 'string' || typeof j['virtual-size'] !== 'number') {
    throw new RumError('IMAGE', `qemu-img info ${path}: no format or virtual size in its output`);
  }
  const info: ImageInfo = { format: j.format, virtualSize: j['virtual-size'] };
  if (typeof j['actual-size'] === 'number') info.actualSize = j['actual-size'];
  if (typeof j['backing-filename'] === 'string') info.backingFile = j['backing-filename'];
  if (typeof j['backing-filename-format'] === 'string') info.backingFormat = j['backing-filename-format'];
  const specific = (j['format-specific'] as { data?: Record<string, unknown> } | undefined)?.data;
  if (typeof specific?.['data-file'] === 'string') info.dataFile = specific['data-file'];
  if (specific?.corrupt === true) info.corrupt = true;
  return info;
}

/**
 * Every file the image at `path` reads from: itself first, then each backing file down to the
 * one with none, as absolute paths (relative backing names resolved as QEMU resolves them).
 * Fails when any file in the chain cannot be opened: a chain known only in part is the caller's
 * to judge. `--force-share`: the chain is usually open in a running VM.
 */
export async function backingChain(path: string): Promise<string[]> {
  return (await backingFiles(path)).map((f) => f.path);
}

/** The image and every file under it, top first, each with its format. */
export async function backingFiles(path: string): Promise<{ path: string; format: ImageFormat }[]> {
  const abs = resolve(path);
  const out = await qemuImg(['info', '--force-share', '--backing-chain', '--output=json', '--', abs]);
  let j: unknown;
  try {
    j = JSON.parse(out.stdout);
  } catch (err) {
    throw new RumError('IMAGE', `qemu-img info --backing-chain ${abs}: unreadable output`, undefined, { cause: err });
  }
  if (!Array.isArray(j) || j.length === 0) throw new RumError('IMAGE', `qemu-img info --backing-chain ${abs}: no images in its output`);
  // Each entry's filename is the previous one's full-backing-filename: absolute, maybe with "..".
  return j.map((e: { filename?: unknown; format?: unknown }, i) => {
    if (typeof e?.filename !== 'string' || typeof e.format !== 'string') throw new RumError('IMAGE', `qemu-img info --backing-chain ${abs}: image ${i} has no filename or format`);
    return { path: i === 0 ? abs : resolve(dirname(abs), e.filename), format: e.format };
  });
}

/**
 * A qcow2 file whose unwritten blocks read from `backing`. The backing format is always given:
 * probing it would let a guest that writes a qcow2 header into a raw disk redirect the host.
 * Without `sizeBytes` the overlay is as large as its backing file.
 */
export async function createOverlay(
  path: string,
  opts: { backing: string; backingFormat: ImageFormat; sizeBytes?: number; unsafe?: boolean },
): Promise<void> {
  // unsafe: the backing file is not there yet (it is about to get that name); the size is then given.
  const args = ['create', '-q', '-f', 'qcow2', '-F', opts.backingFormat, '-b', opts.backing, ...(opts.unsafe ? ['-u'] : []), '--', path];
  if (opts.sizeBytes !== undefined) args.push(String(checkedSize(opts.sizeBytes)));
  await qemuImg(args);
}

/**
 * Puts a qcow2 image on another backing file, keeping what the guest sees: what differs between
 * the old backing and the new is copied into the image first (qemu-img's safe mode). Killed
 * half-way, the image still reads the same: its header names the new backing only at the end.
 */
export async function rebase(path: string, opts: { backing: string; backingFormat: ImageFormat }): Promise<void> {
  await qemuImg(['rebase', '-q', '-f', 'qcow2', '-F', opts.backingFormat, '-b', opts.backing, '--', path]);
}

/** Whether the image holds any cluster of its own (written, or written as zeros), not only what
 * its backing file gives: qemu-img map's entries at depth 0. */
export async function mapsOwnData(path: string): Promise<boolean> {
  const out = await qemuImg(['map', '--force-share', '--output=json', '-f', 'qcow2', '--', path]);
  const entries = JSON.parse(out.stdout) as { depth?: number; present?: boolean }[];
  return entries.some((e) => e.depth === 0 && e.present === true);
}

/** Grow a disk to `sizeBytes`. Never shrinks: that would cut off the guest's data. */
export async function resize(path: string, sizeBytes: number, format?: ImageFormat): Promise<void> {
  const info = await imageInfo(path);
  const size = checkedSize(sizeBytes);
  if (size === info.virtualSize) return;
  if (size < info.virtualSize) {
    throw new RumError(
      'IMAGE',
      `${path} is ${info.virtualSize} bytes; rum does not shrink a disk to ${size}`,
      'raise resources.disk again, or rebuild the disk with `rum up --reset` (its data is lost)',
    );
  }
  await qemuImg(['resize', '-q', '-f', format ?? info.format, '--', path, String(size)]);
}

/**
 * qemu-img's consistency check. Leaked clusters waste space but lose nothing, so they are ok;
 * formats without a check (raw) are ok too. `forceShare`: for a base image a running VM may
 * hold open (read-only, as its backing file).
 */
export async function check(path: string, format?: ImageFormat, opts: { forceShare?: boolean } = {}): Promise<CheckResult> {
  const args = ['check', ...(opts.forceShare ? ['--force-share'] : []), '--output=json', ...(format ? ['-f', format] : []), '--', path];
  const out = await qemuImg(args, { exitCodes: [0, 2, 3, 63] });
  if (out.exitCode === 63) return { ok: true, message: 'this format has no consistency check' };
  let j: Record<string, unknown> = {};
  try {
    j = JSON.parse(out.stdout) as Record<string, unknown>;
  } catch {
    // the exit status alone still says enough
  }
  const count = (k: string) => (typeof j[k] === 'number' ? j[k] : 0);
  const corruptions = count('corruptions');
  const leaks = count('leaks');
  if (out.exitCode === 2 || corruptions > 0) {
    return { ok: false, message: `${corruptions || 'some'} corrupted cluster${corruptions === 1 ? '' : 's'}` };
  }
  if (out.exitCode === 3 || leaks > 0) {
    return { ok: true, message: `${leaks} leaked cluster${leaks === 1 ? '' : 's'} (harmless)` };
  }
  return { ok: true, message: 'no errors' };
}

function checkedSize(bytes: number): number {
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new RangeError(`not a disk size: ${bytes}`);
  return bytes;
}

async function qemuImg(
  args: string[],
  opts: { exitCodes?: number[] } = {},
): Promise<{ stdout: string; exitCode: number }> {
  const accepted = opts.exitCodes ?? [0];
  try {
    // LC_ALL=C: the patterns in hintFor match qemu-img's English messages
    const r = await execa('qemu-img', args, { env: { LC_ALL: 'C' }, reject: false, stdin: 'ignore' });
    if (r.failed && r.exitCode === undefined) throw r; // not started, or killed
    if (accepted.includes(r.exitCode ?? -1)) return { stdout: r.stdout, exitCode: r.exitCode ?? 0 };
    const message = lastLine(r.stderr) || `exit status ${r.exitCode}`;
    throw new RumError('IMAGE', `qemu-img ${args[0]}: ${message.replace(/^qemu-img: /, '')}`, hintFor(r.stderr));
  } catch (err) {
    if (err instanceof RumError) throw err;
    if (err instanceof ExecaError && err.code === 'ENOENT') {
      throw new RumError('TOOL_MISSING', 'qemu-img is not installed', `apt install qemu-utils${seeDoctor('qemu-img')}`, { cause: err });
    }
    throw new RumError('IMAGE', `qemu-img ${args[0]} failed: ${err instanceof Error ? err.message : String(err)}`, undefined, {
      cause: err,
    });
  }
}

function lastLine(text: string): string {
  return text.trim().split('\n').filter((l) => !/warning:/i.test(l)).at(-1)?.trim() ?? '';
}

function hintFor(stderr: string): string | undefined {
  if (/Failed to get ".*" lock|Is another process using the image/.test(stderr)) {
    return 'the image is in use, probably by a running VM: stop it first';
  }
  if (/No such file or directory/.test(stderr)) return 'the file is missing';
  if (/Permission denied/.test(stderr)) return 'check the file permissions (libvirt may have changed its owner)';
  if (/No space left on device/.test(stderr)) return 'the disk is full';
  if (/not in .* format|Image is not in/.test(stderr)) return 'the file is not an image of that format';
  return undefined;
}
