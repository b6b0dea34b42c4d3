// Owns: a local image.base file, which is used in place (never copied into the cache): that it is
// a readable regular file, that it has the checksum rum.yaml declares, and that it is a disk image.
// Not: noticing that it changed later (the rule's key holds its digest), downloads (cache.ts).
import { accessSync, constants, statSync, type Stats } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { RumError } from '../errors.js';
import type { ImageInfo } from './qemu-img.js';
import type { Checksum } from './sums.js';

/**
 * Whether `path` can be digested as an input file: a readable regular file, or nothing at all
 * (which the engine reports as missing). A directory, a device or an unreadable file is left out,
 * so that checkLocalImage, not a raw EISDIR or EACCES, says what is wrong. Synchronous: a rule
 * declares its files synchronously.
 */
export function digestibleOrAbsent(path: string): boolean {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
  if (!st.isFile()) return false;
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The image's facts when the file at `path` may be used as the base image: the declared
 * checksum (if any) matched first, before qemu-img parses a byte of it.
 */
export async function checkLocalImage(path: string, opts: { checksum?: Checksum; signal?: AbortSignal } = {}): Promise<ImageInfo> {
  const what = `image.base ${path}`;
  let st: Stats;
  try {
    st = await stat(path);
  } catch (err) {
    throw unusable(what, err);
  }
  if (st.isDirectory()) {
    throw new RumError('IMAGE', `${what} is a directory, not an image file`, 'point image.base at the image file itself (a .qcow2 or .img)');
  }
  if (!st.isFile()) {
    throw new RumError('IMAGE', `${what} is not a regular file`, 'point image.base at an image file (a .qcow2 or .img), not a device, socket or pipe');
  }
  try {
    await access(path, constants.R_OK);
  } catch (err) {
    throw unusable(what, err);
  }
  if (opts.checksum) {
    const { fileChecksum, formatChecksum } = await import('./sums.js'); // node:crypto: only when a checksum is checked
    const got = await fileChecksum(path, opts.checksum.algo, opts.signal).catch((err: unknown) => {
      throw opts.signal?.aborted ? err : unusable(what, err);
    });
    if (got.hex !== opts.checksum.hex) {
      throw new RumError(
        'IMAGE',
        `checksum mismatch for ${what}: expected ${formatChecksum(opts.checksum)}, got ${formatChecksum(got)}`,
        'the file is not the image image.checksum names: fetch it again, or correct image.checksum if the file is the one you meant',
      );
    }
  }
  // Loaded here, not at the top: the rule imports this module for digestibleOrAbsent on every
  // run, and qemu-img's wrapper (execa) is only needed when the image is checked.
  const { inspectBaseImage } = await import('./inspect.js');
  return inspectBaseImage(path, what, 'local');
}

function unusable(what: string, err: unknown): RumError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') {
    return new RumError('IMAGE', `${what} does not exist`, "check image.base: a relative path is taken from rum.yaml's directory", { cause: err });
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new RumError('IMAGE', `${what} cannot be read (${code})`, 'let your user read it (and every directory above it)', { cause: err });
  }
  return new RumError('IMAGE', `${what} cannot be read: ${code ?? (err instanceof Error ? err.message : String(err))}`, undefined, { cause: err });
}
