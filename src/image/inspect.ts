// Owns: whether a file may serve as a base image: a qcow2 or raw disk that stands alone and is
// intact. A base image is untrusted input (a download, a file from a cloned repository): QEMU
// would follow whatever other file its header names, so such images are refused, not flattened.
// Not: running qemu-img (qemu-img.ts), digests (sums.ts), where the file lives (cache.ts, local.ts).
import { open, stat } from 'node:fs/promises';
import { RumError } from '../errors.js';
import { check, imageInfo, type ImageInfo } from './qemu-img.js';

/** Smaller than this, a raw file holds no bootable system: it is some other file (text, a key). */
export const MIN_RAW_BYTES = 2 ** 20;

/** Where the file came from, for the hints: what the user can do differs. */
export type ImageOrigin = 'local' | 'download';

const HINTS: Record<ImageOrigin, { notImage: string; damaged: string }> = {
  local: {
    notImage: 'point image.base at a qcow2 or raw cloud image, or at a shorthand such as debian-12',
    damaged: 'copy or download the file again',
  },
  download: {
    notImage: 'the server sent something other than a disk image: check image.base (and image.mirror)',
    damaged: 'the image is damaged where it is served from: try again later, another mirror or another image',
  },
};

/**
 * The image's facts when `path` is acceptable as a base image; otherwise a RumError naming
 * `what` (e.g. `image.base /p/disk.qcow2`, or the URL it came from). Reads headers and, for
 * qcow2, its metadata (`qemu-img check`), never the whole file.
 */
export async function inspectBaseImage(path: string, what: string, origin: ImageOrigin): Promise<ImageInfo> {
  const hints = HINTS[origin];
  let info: ImageInfo;
  try {
    info = await imageInfo(path);
  } catch (err) {
    if (err instanceof RumError && err.code === 'TOOL_MISSING') throw err;
    const why = err instanceof Error ? err.message : String(err);
    throw new RumError('IMAGE', `${what} is not a disk image qemu-img can read (${why})`, hints.notImage, { cause: err });
  }
  if (info.backingFile !== undefined) {
    throw new RumError(
      'IMAGE',
      `${what} is an overlay on ${info.backingFile}, not a self-contained image`,
      'a base image may not name a backing file: it could make the VM read any host file. Flatten a trusted one first: qemu-img convert -O qcow2 IN OUT',
    );
  }
  if (info.dataFile !== undefined) {
    throw new RumError(
      'IMAGE',
      `${what} keeps its data in another file (${info.dataFile}), not a self-contained image`,
      'a base image may not name a data file: it could make the VM read any host file. Flatten a trusted one first: qemu-img convert -O qcow2 IN OUT',
    );
  }
  if (info.format === 'qcow2') {
    const damaged = (why: string, cause?: unknown) =>
      new RumError('IMAGE', `${what} is damaged: ${why}`, hints.damaged, cause === undefined ? undefined : { cause });
    if (info.corrupt) throw damaged('its header marks it corrupt');
    const c = await check(path, 'qcow2', { forceShare: true }).catch((err: unknown) => {
      throw damaged(err instanceof Error ? err.message : String(err), err);
    });
    if (!c.ok) throw damaged(c.message);
    return info;
  }
  if (info.format === 'raw') {
    // raw is qemu-img's answer for any file it does not recognise: is it a disk at all?
    const size = (await stat(path)).size;
    if (size < MIN_RAW_BYTES) {
      throw new RumError('IMAGE', `${what} is not a disk image: a ${size}-byte file in no format qemu-img knows`, hints.notImage);
    }
    if (!(await hasBootSignature(path))) {
      throw new RumError(
        'IMAGE',
        `${what} is not a disk image: no format qemu-img knows, and no partition table (its first sector lacks the boot signature)`,
        hints.notImage,
      );
    }
    return info;
  }
  // vmdk, vhdx, luks, ...: rum's overlay and domain only speak qcow2 and raw, and some of these
  // name other files too (a vmdk descriptor lists extents by host path).
  throw new RumError('IMAGE', `${what} is a ${info.format} image; rum uses qcow2 or raw`, 'convert it: qemu-img convert -O qcow2 IN OUT');
}

/**
 * 0x55 0xAA ending the first sector: an MBR, or the protective MBR every GPT disk carries. A raw
 * disk without one has nothing firmware could boot.
 */
async function hasBootSignature(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, 512, 0);
    return bytesRead === 512 && buf[510] === 0x55 && buf[511] === 0xaa;
  } finally {
    await fh.close();
  }
}
