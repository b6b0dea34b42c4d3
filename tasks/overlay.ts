// Owns: the VM's disk, a qcow2 overlay on the provisioned layer or the base image. It holds the guest's data: created
// once, then kept; only --reset or destroy makes a new one. A changed base is reported, never
// applied.
import { stat } from 'node:fs/promises';
import { RumError } from '../src/errors.js';
import { produceAtomic } from '../src/files/atomic.js';
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import { fileExists } from './checks.js';
import { baseImage } from './base-image.js';
import type { RumCtx } from './context.js';
import { layer, type Layer } from './layer.js';
import { chainOf, readSnapshots } from '../src/machine/snapshots.js';

export const overlay = defineRule({
  id: 'overlay',
  kind: 'stateful',
  version: 1,
  deps: [baseImage, layer],
  resettable: true,
  inputs: (_: RumCtx) => ({}),
  output: ({ vm }) => vm.path('overlay'),
  build: async ({ ctx, upstream, action, notice }) => {
    const { check, createOverlay, imageInfo } = await import('../src/image/qemu-img.js');
    const base = upstream(baseImage).data;
    const provisioned: Layer | undefined = layer.applies!(ctx) ? upstream(layer).data : undefined;
    const under = provisioned ? { path: provisioned.path, format: 'qcow2' } : { path: base.path, format: base.format };
    const path = ctx.vm.path('overlay');
    const exists = await stat(path).then(() => true, () => false);
    // A disk that exists but has no record (a crash after creating it, a lost state record):
    // adopted, never replaced, unless this is a reset. One rum cannot adopt is refused.
    if (exists && action !== 'rebuild') {
      const info = await imageInfo(path).catch(() => undefined);
      const below = chainOf(await readSnapshots(ctx.vm), ctx.vm)[0] ?? under.path; // a snapshot's layer, or what the disk was made on
      if (info?.backingFile === below) return { digest: digestOf(`overlay:${under.path}:adopted`), data: { size: info.virtualSize } };
      throw new RumError(
        'STATE',
        `the VM's disk ${path} has no record, and ${info ? `it is based on ${info.backingFile ?? 'no image'}, not ${below}` : 'qemu-img cannot read it'}: rum will not replace it`,
        '`rum up --reset` makes a fresh disk (the data on this one is lost); or move it away first to keep it',
      );
    }
    const floor = provisioned?.virtualSize ?? base.virtualSize;
    const size = Math.max(ctx.config.resources.disk, floor);
    if (size > ctx.config.resources.disk)
      notice(`resources.disk is smaller than the ${provisioned ? 'provisioned layer' : 'image'} (${floor} bytes): using its size`);
    // Verified before it takes the disk's name: qemu-img can meet a full disk and still exit 0.
    const make = () =>
      produceAtomic(path, (tmp) => createOverlay(tmp, { backing: under.path, backingFormat: under.format, sizeBytes: size }), {
        needed: 256 * 1024, // a fresh overlay's metadata: ~200 KiB up to a 1 TiB disk
        verify: async (tmp) => {
          const [info, sound] = await Promise.all([imageInfo(tmp), check(tmp, 'qcow2')]);
          if (!sound.ok || info.backingFile !== under.path) throw new RumError('IMAGE', `the new disk ${tmp} is not sound: ${sound.ok ? 'wrong backing file' : sound.message}`);
        },
      });
    // A fresh disk sits on no snapshot: a reset's (or a lost disk's) snapshots go with the old one
    // (`up` refused to drop any unasked).
    await (await ctx.machine.snapshots()).dropAll(make);
    // Its identity is its creation, not its ever-changing content.
    // A disk on no layer keeps the digest it always had.
    return { digest: digestOf(`overlay:${base.path}:${ctx.generation}${provisioned ? `:${provisioned.path}` : ''}`), data: { size } };
  },
  // Gone behind rum's back, the guest's data went with it: never silently replaced by an empty
  // disk (which the same instance-id would not even provision).
  check: async ({ ctx: { vm } }) =>
    (await fileExists(vm.path('overlay'))).ok ? { ok: true } : { ok: false, lost: true, why: `the VM's disk ${vm.path('overlay')} is gone` },
});
