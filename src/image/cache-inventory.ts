// Owns: what the shared image cache holds, read as data: base images, provisioned layers and
// their metadata, which URL gave which image, and what killed downloads and layer builds left.
// Not: which VMs use any of it (cache-refs.ts), nor removing anything (gc.ts).
//
//   <cache>/<algo>-<hex>.img          a base image (cache.ts)
//   <cache>/by-url/<key>.json|.lock   which URL gave which image; held while it downloads
//   <cache>/incoming/<key>.img*       a download under way, or a partial a killed one left
//   <cache>/layers/<key>-<nonce>.qcow2  a provisioned layer (read-only, backed by a base): one per build
//   <cache>/layers/<key>.json           the key's record: which build is the key's layer (layer-store.ts)
//   <cache>/layers/<key>.lock           held while that layer is built, in layers/build-<key>/
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { lockHolder } from '../files/lock.js';
import { layersDir } from './layer-store.js';

export interface CachedBase {
  kind: 'base';
  path: string;
  digest: string; // `sha512:<hex>`, as image.checksum and rum.lock write it
  bytes: number; // allocated on disk
  urls: string[]; // the by-url entries naming it
}

export interface CachedLayer {
  kind: 'layer';
  path: string;
  key: string;
  bytes: number;
  /** From <key>.json; null when it is missing or damaged (the layer is still a layer). */
  /** The key's record, when it names this file (an older build of the key has none). */
  meta: { base: string | null; packages: string[] | null; created: string | null } | null;
}

export interface UrlEntry {
  path: string;
  url: string | null;
  /** The image it names, as a path in the cache; null: an entry rum cannot read (left alone). */
  image: string | null;
}

/** A file or directory no image is made of: a download or a build a killed rum left. */
export interface Leftover {
  kind: 'incoming' | 'build' | 'layer-meta';
  path: string;
  key: string;
  bytes: number;
  mtimeMs: number;
  /** The lock of the download or build it belongs to is held by a live rum. */
  busy: boolean;
}

export interface Inventory {
  dir: string;
  bases: CachedBase[];
  layers: CachedLayer[];
  urlEntries: UrlEntry[];
  leftovers: Leftover[];
  /** Layers being built now (their lock held): key and builder. */
  building: { key: string; pid: number }[];
}

const BASE = /^(sha256|sha512)-([0-9a-f]+)\.img$/;
const KEY = /^[A-Za-z0-9][A-Za-z0-9_-]*$/; // a layer's key: a plain word, never a path

export function baseDigest(name: string): string | undefined {
  const m = BASE.exec(name);
  return m && m[2]!.length === (m[1] === 'sha256' ? 64 : 128) ? `${m[1]}:${m[2]}` : undefined;
}

/** Everything in the cache at `dir` (a missing cache holds nothing). */
export async function readInventory(cacheDir: string): Promise<Inventory> {
  const dir = resolve(cacheDir);
  const [top, urlEntries, incoming, layerFiles] = await Promise.all([
    names(dir),
    readUrlEntries(dir),
    readIncoming(dir),
    readLayers(layersDir(dir)),
  ]);
  const bases: CachedBase[] = [];
  for (const name of top) {
    const digest = baseDigest(name);
    const st = digest === undefined ? undefined : await lstat(join(dir, name)).catch(() => undefined);
    if (digest === undefined || !st?.isFile()) continue;
    const path = join(dir, name);
    const urls = urlEntries.filter((e) => e.image === path && e.url !== null).map((e) => e.url!);
    bases.push({ kind: 'base', path, digest, bytes: st.blocks * 512, urls: [...new Set(urls)].sort() });
  }
  return { dir, bases, urlEntries, leftovers: [...incoming, ...layerFiles.leftovers], layers: layerFiles.layers, building: layerFiles.building };
}

async function names(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => [] as string[]);
}

async function readUrlEntries(dir: string): Promise<UrlEntry[]> {
  const byUrl = join(dir, 'by-url');
  const out: UrlEntry[] = [];
  for (const name of (await names(byUrl)).filter((n) => n.endsWith('.json')).sort()) {
    const path = join(byUrl, name);
    const e = await readJson(path);
    // Only a name cache.ts writes: an entry cannot point anywhere but at an image in the cache.
    const file = typeof e?.file === 'string' && baseDigest(e.file) ? e.file : undefined;
    out.push({ path, url: typeof e?.url === 'string' ? e.url : null, image: file ? join(dir, file) : null });
  }
  return out;
}

/** Files in incoming/, each with whether its URL's download lock is held. */
async function readIncoming(dir: string): Promise<Leftover[]> {
  const incoming = join(dir, 'incoming');
  const out: Leftover[] = [];
  for (const name of (await names(incoming)).sort()) {
    const path = join(incoming, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isFile()) continue;
    const key = name.split('.')[0]!;
    const busy = KEY.test(key) && typeof (await lockHolder(join(dir, 'by-url', `${key}.lock`))) === 'object';
    out.push({ kind: 'incoming', path, key, bytes: st.blocks * 512, mtimeMs: st.mtimeMs, busy });
  }
  return out;
}

async function readLayers(dir: string): Promise<{ layers: CachedLayer[]; leftovers: Leftover[]; building: Inventory['building'] }> {
  const all = new Set(await names(dir));
  const layers: CachedLayer[] = [];
  const leftovers: Leftover[] = [];
  // A layer is being built while its lock is held, whatever its build has made so far.
  const building: Inventory['building'] = [];
  for (const key of [...all].map((n) => /^(.+)\.lock$/.exec(n)?.[1]).filter((k): k is string => k !== undefined && KEY.test(k)).sort()) {
    const h = await lockHolder(join(dir, `${key}.lock`));
    if (typeof h === 'object') building.push({ key, pid: h.pid });
  }
  const held = (key: string) => building.some((b) => b.key === key);
  for (const name of [...all].sort()) {
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st) continue;
    const layer = /^(.+)-[0-9a-f]+\.qcow2$/.exec(name)?.[1];
    const meta = /^(.+)\.json$/.exec(name)?.[1];
    const build = /^build-(.+)$/.exec(name)?.[1];
    if (layer !== undefined && KEY.test(layer) && st.isFile()) {
      const record = await readJson(join(dir, `${layer}.json`));
      layers.push({ kind: 'layer', path, key: layer, bytes: st.blocks * 512, meta: record?.file === name ? layerMeta(record) : null });
    } else if (meta !== undefined && KEY.test(meta) && st.isFile() && !hasBuild(meta, all)) {
      // Metadata of a layer that is gone: kept only while that layer is being built.
      leftovers.push({ kind: 'layer-meta', path, key: meta, bytes: st.blocks * 512, mtimeMs: st.mtimeMs, busy: held(meta) });
    } else if (build !== undefined && KEY.test(build) && st.isDirectory()) {
      leftovers.push({ kind: 'build', path, key: build, bytes: await treeBytes(path), mtimeMs: st.mtimeMs, busy: held(build) });
    }
  }
  return { layers, leftovers, building };
}

/** Whether any build of the key is there: its record is then kept, even a damaged one. */
function hasBuild(key: string, all: Set<string>): boolean {
  return [...all].some((n) => n.startsWith(`${key}-`) && n.endsWith('.qcow2'));
}

/** The fields rum reads from a layer's metadata; anything else in it is the layer store's. */
function layerMeta(j: Record<string, unknown> | undefined): CachedLayer['meta'] {
  if (!j) return null;
  const packages = Array.isArray(j.packages) && j.packages.every((p) => typeof p === 'string') ? (j.packages as string[]) : null;
  const base = (j.base as { path?: unknown } | null)?.path;
  return { base: typeof base === 'string' ? base : null, packages, created: typeof j.created === 'string' ? j.created : null };
}

async function readJson(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    const v: unknown = JSON.parse(await readFile(path, 'utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined; // missing or damaged: the caller says what that means
  }
}

/** Bytes allocated under `path`, symlinks not followed. */
export async function treeBytes(path: string): Promise<number> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return 0;
  if (!st.isDirectory()) return st.blocks * 512;
  let sum = st.blocks * 512;
  for (const name of await names(path)) sum += await treeBytes(join(path, name));
  return sum;
}
