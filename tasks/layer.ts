// Owns: the provisioned layer: provision.packages and provision.image installed once on the base
// image, sealed, and kept read-only in the shared cache under a key of exactly what went in.
// The VM's disk sits on it. Only machines with packages or an image script have one.
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import { baseImage } from './base-image.js';
import type { RumCtx } from './context.js';
import { projectNetwork } from './project-network.js';
import { LAYER_RECIPE } from '../src/image/layer-store.js';
import { fileExists } from './checks.js';

/** What the disk is made on. */
export type Layer = { path: string; key: string; virtualSize: number };

const provisioned = (c: RumCtx) => ({
  packages: c.config.provision.packages,
  aptSources: c.config.provision.apt_sources,
  script: c.config.provision.image,
});

export const layer = defineRule({
  id: 'layer',
  kind: 'fetched',
  version: LAYER_RECIPE, // the key in the cache has it too: one bump, both move
  deps: [baseImage],
  // The builder boots on the machine's network, which must exist first.
  after: [projectNetwork],
  applies: (c: RumCtx) => c.config.provision.packages.length > 0 || c.config.provision.image !== undefined,
  // Machines provisioned alike share one node (and, through the key, one layer across projects).
  shareKey: (c: RumCtx) => JSON.stringify([baseImage.shareKey!(c), provisioned(c)]),
  inputs: (c: RumCtx) => ({
    'provision.packages': c.config.provision.packages,
    'provision.apt_sources': c.config.provision.apt_sources,
    'provision.image': c.config.provision.image,
  }),
  build: async ({ ctx, inputs: i, upstream, progress, notice, signal }): Promise<{ digest: ReturnType<typeof digestOf>; data: Layer }> => {
    const { ensureLayer, layerRequest } = await import('../src/machine/layer-builder.js');
    const base = upstream(baseImage);
    const { key, inputs } = layerRequest(i, { digest: base.digest, path: base.data.path });
    const got = await ensureLayer({
      key,
      base: { ...base.data, digest: base.digest },
      inputs,
      machine: ctx.machine,
      progress,
      notice,
      signal,
    });
    if (!got.built) progress('cached');
    // A build's identity, not the key's: another build of the key is other bytes, and a disk
    // made on this one must not be told it is the same.
    return { digest: digestOf(`layer:${got.path}`), data: { path: got.path, key, virtualSize: got.record.virtualSize } };
  },
  check: async ({ previous }) => {
    const path = (previous?.data as Partial<Layer> | undefined)?.path;
    return typeof path === 'string' ? fileExists(path) : { ok: false, why: 'no layer recorded' };
  },
});
