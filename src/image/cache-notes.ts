// Owns: the words for what a look at the image cache could not tell for sure (and so kept), and
// the shapes rum images and rum gc share. Data and wording only: the renderer loads this module,
// so it must not pull in qemu-img or the file system code.
import { assertNever } from '../errors.js';

/** A VM using an image: its name and the rum.yaml that owns it (null: owner.json unreadable). */
export interface VmRef {
  vm: string;
  config: string | null;
}

/** What the search could not tell for sure, or gc could not do, and so kept: data, worded by describeCacheNote. */
export type CacheNote =
  | { type: 'chain-unreadable'; vm: string; file: string; message: string; kept: 'recorded' | 'everything' }
  | { type: 'layer-backing-unknown'; layer: string; message: string }
  | { type: 'layer-building'; key: string; pid: number }
  | { type: 'outside-cache'; path: string }
  | { type: 'not-removed'; path: string; message: string };

export function describeCacheNote(n: CacheNote): string {
  switch (n.type) {
    case 'chain-unreadable':
      return (
        `${n.vm}: the backing chain of ${n.file} cannot be read (${n.message}): ` +
        (n.kept === 'recorded' ? 'what its state record names is kept' : 'its state record names no image either, so every image is kept')
      );
    case 'layer-backing-unknown':
      return `the layer ${n.layer} is in use, but neither qemu-img (${n.message}) nor its metadata says what it sits on: every base image is kept`;
    case 'layer-building':
      return `the layer ${n.key} is being built (pid ${n.pid}): every base image is kept`;
    case 'outside-cache':
      return `${n.path} is not inside the image cache (a symlink?): kept`;
    case 'not-removed':
      return `${n.path} could not be removed (${n.message})`;
    default:
      return assertNever(n);
  }
}

