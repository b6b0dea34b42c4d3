// What the rules read of the machine's snapshots (src/machine/snapshots.ts): the layers under the
// disk and the last restore. Absent when there are none, so keys from before snapshots stand.
import { chainOf, readSnapshots } from '../src/machine/snapshots.js';
import type { RumCtx } from './context.js';

/** The disk's layers, nearest first, when it sits on any. */
export async function layersInput(c: RumCtx): Promise<{ 'disk.layers'?: string[] }> {
  const chain = chainOf(await readSnapshots(c.vm), c.vm);
  return chain.length > 0 ? { 'disk.layers': chain } : {};
}

/** Which restore made the disk, once one did. */
export async function restoredInput(c: RumCtx): Promise<{ 'disk.restored'?: string }> {
  const r = (await readSnapshots(c.vm)).disk.restored;
  return r !== undefined ? { 'disk.restored': r } : {};
}
