// Owns: provisioned layers in the shared cache: their key, where they live, finding one, and
// taking a finished build in. Not: building one (src/machine/layer-builder.ts) or the graph.
//
//   <cache>/layers/<key>.json              the layer this key gave: its file and what went in;
//                                          written last, so a layer without one is not in the cache
//   <cache>/layers/<key>-<nonce>.qcow2     the layer: read-only, backed by its base image
//   <cache>/layers/<key>.lock              held while the key is being built (files/lock.ts)
//   <cache>/layers/build-<key>/            a build under way: the builder's disk, seed, console
//
// Each build has its own file name: a disk made on one build of a key never finds another
// build's bytes under its backing file (a layer is not reproducible bit for bit).
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir, writeAtomic } from '../files/atomic.js';
import { acquireLock, type Lock } from '../files/lock.js';
import { canonicalJson, digestOf } from '../graph/digest.js';
import { imageCacheDir } from '../paths.js';

/** Bump when the builder makes a different layer from the same inputs (its user-data, its seal). */
export const LAYER_RECIPE = 1;

/** What a layer is made of: exactly what its key reads. */
export interface LayerInputs {
  base: string; // the base image's digest
  /** Where the base is: the layer's header names it. A cached base's path follows its digest; two
   * local files with the same bytes are still two bases (either may change or go). */
  basePath: string;
  packages: readonly string[];
  aptSources?: readonly string[];
  script?: string; // provision.image
}

export interface LayerRecord {
  key: string;
  file: string; // name inside the layers directory
  base: { path: string; digest: string };
  packages: string[];
  aptSources?: string[];
  script?: string;
  virtualSize: number;
  created: string;
  recipe: number;
}

export interface CachedLayer {
  path: string;
  record: LayerRecord;
}

export function layerKey(i: LayerInputs): string {
  return digestOf(canonicalJson({ recipe: LAYER_RECIPE, base: i.base, basePath: i.basePath, packages: i.packages, aptSources: i.aptSources, script: i.script }));
}

export function layersDir(cacheDir = imageCacheDir()): string {
  return join(cacheDir, 'layers');
}

export class LayerStore {
  readonly dir: string;
  constructor(cacheDir = imageCacheDir()) {
    this.dir = layersDir(cacheDir);
  }

  buildDir(key: string): string {
    return join(this.dir, `build-${key}`);
  }

  /** The layer this key gave, when its record and its file are both there. */
  async lookup(key: string): Promise<CachedLayer | undefined> {
    const record = await this.readRecord(key);
    if (!record) return undefined;
    const path = join(this.dir, record.file);
    return (await stat(path).then((s) => s.isFile(), () => false)) ? { path, record } : undefined;
  }

  async lock(key: string, opts: { signal?: AbortSignal; onWait?: () => void }): Promise<Lock> {
    await mkdir(this.dir, { recursive: true });
    return acquireLock(join(this.dir, `${key}.lock`), {
      what: `the build of layer ${key}`,
      timeoutMs: 2 * 60 * 60_000,
      onWait: () => opts.onWait?.(),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  }

  /** Takes a sealed, checked build in: the file renamed into place read-only, then its record
   * (the commit point). Called under the key's lock. */
  async commit(built: string, r: Omit<LayerRecord, 'file' | 'created' | 'recipe'>): Promise<CachedLayer> {
    const file = `${r.key}-${randomBytes(4).toString('hex')}.qcow2`;
    const path = join(this.dir, file);
    await chmod(built, 0o444);
    const fh = await open(built, 'r');
    await fh.sync().finally(() => fh.close()); // its bytes on disk before its name is
    await rename(built, path);
    await fsyncDir(this.dir);
    const record: LayerRecord = { ...r, file, created: new Date().toISOString(), recipe: LAYER_RECIPE };
    await writeAtomic(join(this.dir, `${r.key}.json`), `${JSON.stringify(record, null, 2)}\n`);
    return { path, record };
  }

  private async readRecord(key: string): Promise<LayerRecord | undefined> {
    try {
      const r = JSON.parse(await readFile(join(this.dir, `${key}.json`), 'utf8')) as Partial<LayerRecord> | null;
      const nameOk = typeof r?.file === 'string' && r.file.startsWith(`${key}-`) && /^[0-9a-f-]+\.qcow2$/.test(r.file);
      return r && r.key === key && nameOk && typeof r.virtualSize === 'number' ? (r as LayerRecord) : undefined;
    } catch {
      return undefined; // absent or damaged: not in the cache (the next build writes it afresh)
    }
  }
}

