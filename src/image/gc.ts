// Owns: the image cache as disk space: each image, its size and the VMs that use it (`rum
// images`), and removing what no VM uses (`rum gc`), under gc.lock with no run using the cache
// (cache-use.ts). Nothing outside the cache directory is ever removed: each path's real parent
// directory is checked to lie inside the cache's real path just before it goes.
// Not: finding the uses (cache-refs.ts) or reading the cache (cache-inventory.ts); rendering.
import { lstat, realpath, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { lockHolder } from '../files/lock.js';
import { imageCacheDir, vmsRoot } from '../paths.js';
import { readInventory, type Inventory } from './cache-inventory.js';
import type { CacheNote, VmRef } from './cache-notes.js';
import { findUses, inside, type Uses } from './cache-refs.js';
import { lockForGc } from './cache-use.js';
import { imageInfo } from './qemu-img.js';

/** One image: in the cache (a base or a provisioned layer), or a local file a VM sits on. */
export interface ImageRow {
  kind: 'base' | 'layer' | 'local';
  path: string;
  key: string | null; // a base's digest (sha512:<hex>), a layer's key
  bytes: number | null; // allocated on disk; null: a local image that is not there
  urls: string[]; // where a base came from (by-url entries)
  packages: string[] | null; // a layer's, from its metadata
  base: string | null; // what a layer sits on
  created: string | null;
  usedBy: VmRef[];
}

export interface ImagesReport {
  cache: string;
  images: ImageRow[];
  notes: CacheNote[];
}

export interface Removal {
  kind: 'base' | 'layer' | 'layer-meta' | 'by-url' | 'incoming' | 'build';
  path: string;
  key: string | null;
  bytes: number;
}

export interface GcReport {
  cache: string;
  dryRun: boolean;
  removed: Removal[]; // with dryRun: what would be
  bytes: number; // freed (would be)
  kept: ImageRow[]; // the cached images that stay, with who uses them
  notes: CacheNote[];
}

export interface GcOptions {
  env?: NodeJS.ProcessEnv;
  dryRun?: boolean;
  onWait?: (holder: { pid: number; command: string }) => void;
  /** Files in incoming/ untouched this long are a download nobody resumes. Default: a day. */
  incomingAgeMs?: number;
  now?: number;
}

const DAY = 24 * 3600_000;

export async function listImages(env = process.env): Promise<ImagesReport> {
  const inv = await readInventory(imageCacheDir(env));
  const uses = await findUses(vmsRoot(env), inv);
  return { cache: inv.dir, images: await rows(inv, uses, true), notes: uses.notes };
}

export async function collectGarbage(opts: GcOptions = {}): Promise<GcReport> {
  const dir = resolve(imageCacheDir(opts.env));
  const empty: GcReport = { cache: dir, dryRun: opts.dryRun === true, removed: [], bytes: 0, kept: [], notes: [] };
  const real = await realpath(dir).catch(() => undefined);
  if (!real) return empty; // no cache yet: nothing to collect
  const lock = await lockForGc(dir, { keepDead: opts.dryRun === true, ...(opts.onWait ? { onWait: opts.onWait } : {}) });
  try {
    const inv = await readInventory(dir);
    const uses = await findUses(vmsRoot(opts.env), inv);
    const notes = [...uses.notes];
    const doomed = await choose(inv, uses, opts);
    const removed: Removal[] = [];
    for (const r of doomed) {
      // Checked for the dry run too: it lists only what the real run would remove.
      const at = await insideCache(real, r.path);
      if (at === undefined) {
        notes.push({ type: 'outside-cache', path: r.path });
        continue;
      }
      if (!opts.dryRun) {
        const failed = await rm(at, { recursive: r.kind === 'build', force: true }).then(() => undefined, (err: Error) => err);
        if (failed) {
          notes.push({ type: 'not-removed', path: r.path, message: (failed as NodeJS.ErrnoException).code ?? failed.message });
          continue;
        }
      }
      removed.push(r);
    }
    const gone = new Set(removed.map((r) => r.path));
    const kept = (await rows(inv, uses, false)).filter((row) => !gone.has(row.path));
    return { ...empty, removed, bytes: removed.reduce((n, r) => n + r.bytes, 0), kept, notes };
  } finally {
    await lock.release();
  }
}

/** What goes, each image's records before the image (so a crash leaves an image without a
 * record, never a record without its image), then the leftovers of killed runs. */
async function choose(inv: Inventory, uses: Uses, opts: GcOptions): Promise<Removal[]> {
  const out: Removal[] = [];
  const building = new Set(inv.building.map((b) => b.key));
  const goingBases = new Set<string>();
  for (const layer of inv.layers) {
    if (uses.keepAll || building.has(layer.key) || (await uses.of(layer.path)).length > 0) continue;
    // The key's record goes with the build it names, not with an older build of the key.
    const meta = join(dirname(layer.path), `${layer.key}.json`);
    const st = layer.meta ? await lstat(meta).catch(() => undefined) : undefined;
    if (st?.isFile()) out.push({ kind: 'layer-meta', path: meta, key: layer.key, bytes: st.blocks * 512 });
    out.push({ kind: 'layer', path: layer.path, key: layer.key, bytes: layer.bytes });
  }
  const entry = (e: Inventory['urlEntries'][number], bytes: number): Removal => ({ kind: 'by-url', path: e.path, key: basename(e.path, '.json'), bytes });
  for (const base of inv.bases) {
    if (uses.keepAll || uses.keepBases || (await uses.of(base.path)).length > 0) continue;
    goingBases.add(base.path);
    for (const e of inv.urlEntries.filter((x) => x.image === base.path)) out.push(entry(e, await sizeOf(e.path)));
    out.push({ kind: 'base', path: base.path, key: base.digest, bytes: base.bytes });
  }
  // An entry naming an image that is already gone, unless its URL is being fetched right now.
  for (const e of inv.urlEntries) {
    if (e.image === null || goingBases.has(e.image) || (await lstat(e.image).then(() => true, () => false))) continue;
    if (typeof (await lockHolder(e.path.replace(/\.json$/, '.lock'))) === 'object') continue;
    out.push(entry(e, await sizeOf(e.path)));
  }
  const now = opts.now ?? Date.now();
  for (const l of inv.leftovers) {
    if (l.busy) continue;
    if (l.kind === 'incoming' && now - l.mtimeMs < (opts.incomingAgeMs ?? DAY)) continue; // may still be resumed
    out.push({ kind: l.kind, path: l.path, key: l.key, bytes: l.bytes });
  }
  return out;
}

/** Each cached image (and with `locals`, each local image a VM sits on) with its users. */
async function rows(inv: Inventory, uses: Uses, locals: boolean): Promise<ImageRow[]> {
  const row = (r: Pick<ImageRow, 'kind' | 'path' | 'key' | 'bytes' | 'usedBy'> & Partial<ImageRow>): ImageRow => ({
    kind: r.kind,
    path: r.path,
    key: r.key,
    bytes: r.bytes,
    urls: r.urls ?? [],
    packages: r.packages ?? null,
    base: r.base ?? null,
    created: r.created ?? null,
    usedBy: r.usedBy,
  });
  const out: ImageRow[] = [];
  for (const b of inv.bases) out.push(row({ kind: 'base', path: b.path, key: b.digest, bytes: b.bytes, urls: b.urls, usedBy: await uses.of(b.path) }));
  for (const l of inv.layers) {
    // What the file says it sits on; its metadata only when qemu-img cannot tell.
    const backing = await imageInfo(l.path).then((i) => i.backingFile && resolve(dirname(l.path), i.backingFile), () => undefined);
    const meta = l.meta ? { packages: l.meta.packages, created: l.meta.created } : {};
    out.push(row({ kind: 'layer', path: l.path, key: l.key, bytes: l.bytes, base: backing ?? l.meta?.base ?? null, ...meta, usedBy: await uses.of(l.path) }));
  }
  if (!locals) return out;
  const cached = new Set(await Promise.all([...inv.bases, ...inv.layers].map((i) => identity(i.path))));
  for (const l of uses.locals) {
    if (cached.has(await identity(l.path))) continue; // the cache, reached by another path
    const st = await stat(l.path).catch(() => undefined);
    out.push(row({ kind: 'local', path: l.path, key: null, bytes: st ? st.blocks * 512 : null, usedBy: l.usedBy }));
  }
  return out;
}

async function identity(path: string): Promise<string> {
  const st = await stat(path).catch(() => undefined);
  return st ? `${st.dev}:${st.ino}` : `path:${resolve(path)}`;
}

async function sizeOf(path: string): Promise<number> {
  return ((await lstat(path).catch(() => undefined))?.blocks ?? 0) * 512;
}

/** The path to remove when the file's real directory lies inside the cache's real path (the
 * name itself, a symlink included, is removed, never what it points to); else undefined. */
async function insideCache(realCache: string, path: string): Promise<string | undefined> {
  const parent = await realpath(dirname(resolve(path))).catch(() => undefined);
  const name = basename(path);
  if (parent === undefined || name === '.' || name === '..' || name === '') return undefined;
  const at = join(parent, name);
  return inside(at, realCache) ? at : undefined;
}
