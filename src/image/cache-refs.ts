// Owns: which images rum's VMs use, found from every directory under vmsRoot(): the backing chain
// of the disk and of each snapshot layer (qemu-img, so a missing or damaged state record hides
// nothing a disk reads), and the image paths the state record names. Files are matched by inode
// as well as by path: a cache reached through a symlink is still the same cache. When in doubt, a
// file counts as used. Not: what the cache holds (cache-inventory.ts), nor removing (gc.ts), nor
// the notes' words (cache-notes.ts).
import type { Dirent } from 'node:fs';
import { lstat, readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { RumError } from '../errors.js';
import { VmFile } from '../paths.js';
import { readVmRecords } from '../vm-list.js';
import type { Inventory } from './cache-inventory.js';
import type { CacheNote, VmRef } from './cache-notes.js';
import { backingChain, imageInfo } from './qemu-img.js';

export interface Uses {
  /** The VMs that read or record the file at `path` (none: unused). */
  of(path: string): Promise<VmRef[]>;
  /** Some VM could not be read at all: nothing in the cache may go. */
  keepAll: boolean;
  /** Some layer in use sits on an unknown base: no base image may go. */
  keepBases: boolean;
  notes: CacheNote[];
  /** Images outside the cache that VMs sit on (a local image.base). */
  locals: { path: string; usedBy: VmRef[] }[];
}

/** A set of VM references per file, found by path or by inode. */
class UseMap {
  private readonly byKey = new Map<string, Map<string, VmRef>>();
  async add(path: string, ref: VmRef): Promise<void> {
    for (const k of await keysOf(path)) {
      const refs = this.byKey.get(k) ?? new Map<string, VmRef>();
      refs.set(ref.vm, ref);
      this.byKey.set(k, refs);
    }
  }
  async of(path: string): Promise<VmRef[]> {
    const all = new Map<string, VmRef>();
    for (const k of await keysOf(path)) for (const [vm, r] of this.byKey.get(k) ?? []) all.set(vm, r);
    return [...all.values()].sort((a, b) => (a.vm < b.vm ? -1 : a.vm > b.vm ? 1 : 0));
  }
}

async function keysOf(path: string): Promise<string[]> {
  const st = await stat(path).catch(() => undefined);
  return [`path:${resolve(path)}`, ...(st ? [`inode:${st.dev}:${st.ino}`] : [])];
}

/** What one VM directory says it uses. */
interface VmUse {
  files: string[]; // every file in the chains of its disks (as far as they could be read)
  recorded: string[]; // absolute paths in its state record's data
  images: string[]; // of those, the base image's and the layer's
  unreadable?: { file: string; message: string };
}

/**
 * Every use of an image by a VM under `root`, and through the layers of `inv` that are used,
 * the bases those layers sit on.
 */
export async function findUses(root: string, inv: Inventory): Promise<Uses> {
  let entries: Dirent[];
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new RumError('STATE', `cannot read rum's data directory ${root}: ${(err as Error).message}`, `check its permissions (ls -ld ${root})`);
    entries = [];
  }
  const owners = new Map((await readVmRecords(root)).map((r) => [r.name, r.config]));
  const uses = new UseMap();
  const result: Uses = { of: (p) => uses.of(p), keepAll: false, keepBases: false, notes: [], locals: [] };
  const locals = new Map<string, VmRef[]>();
  const cache = resolve(inv.dir);
  const vms = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  const found = await Promise.all(vms.map((name) => readVmUse(join(root, name))));
  for (const [i, u] of found.entries()) {
    const ref: VmRef = { vm: vms[i]!, config: owners.get(vms[i]!) ?? null };
    for (const f of [...u.files, ...u.recorded]) await uses.add(f, ref);
    if (u.unreadable) {
      const kept = u.images.length > 0 ? 'recorded' : 'everything';
      result.notes.push({ type: 'chain-unreadable', vm: ref.vm, ...u.unreadable, kept });
      if (kept === 'everything') result.keepAll = true;
    }
    // An image outside the cache and outside every VM directory: a local image.base.
    for (const f of new Set([...u.files, ...u.images].map((p) => resolve(p))))
      if (!inside(f, cache) && !inside(f, resolve(root))) locals.set(f, [...(locals.get(f) ?? []), ref]);
  }
  await throughLayers(inv, uses, result);
  for (const [path, usedBy] of [...locals].sort(([a], [b]) => (a < b ? -1 : 1))) result.locals.push({ path, usedBy });
  return result;
}

/** A layer in use keeps what it sits on, for the same VMs: needed when only a state record
 * named the layer (its disk's chain could not be read). */
async function throughLayers(inv: Inventory, uses: UseMap, result: Uses): Promise<void> {
  for (const b of inv.building) {
    result.notes.push({ type: 'layer-building', key: b.key, pid: b.pid });
    result.keepBases = true; // its base is known only to the build
  }
  for (const layer of inv.layers) {
    const refs = await uses.of(layer.path);
    if (refs.length === 0) continue;
    let under: string[];
    try {
      under = (await backingChain(layer.path)).slice(1);
    } catch (err) {
      if (err instanceof RumError && err.code === 'TOOL_MISSING') throw err;
      if (layer.meta?.base) under = [layer.meta.base];
      else {
        result.notes.push({ type: 'layer-backing-unknown', layer: layer.key, message: (err as Error).message });
        result.keepBases = true;
        continue;
      }
    }
    for (const f of under) for (const r of refs) await uses.add(f, r);
  }
}

async function readVmUse(dir: string): Promise<VmUse> {
  const use: VmUse = { files: [], recorded: [], images: [] };
  // A directory that cannot be listed may hold a disk: judged as a chain that cannot be read.
  const list = (d: string) =>
    readdir(d, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') use.unreadable ??= { file: d, message: err.code ?? err.message };
      return [] as Dirent[];
    });
  const layersDir = join(dir, VmFile.layers);
  const [top, layers] = [await list(dir), await list(layersDir)];
  // The disk, and any new top a killed snapshot or `up` left beside it (disk.qcow2.next-*, .tmp-*).
  const disks = [
    ...top.filter((e) => e.isFile() && e.name.includes('.qcow2')).map((e) => join(dir, e.name)),
    ...layers.filter((e) => e.isFile()).map((e) => join(layersDir, e.name)),
  ];
  for (const disk of disks) {
    const chain = await chainOf(disk);
    if (chain === 'gone') continue;
    use.files.push(...chain.files);
    if (chain.error) use.unreadable ??= { file: disk, message: chain.error };
  }
  Object.assign(use, await readRecorded(join(dir, VmFile.state)));
  return use;
}

/**
 * The chain of `file`; when qemu-img cannot open all of it, what can be read of it one file at a
 * time, and why the rest cannot. 'gone': the file went meanwhile (a temp renamed away).
 */
async function chainOf(file: string): Promise<{ files: string[]; error?: string } | 'gone'> {
  try {
    return { files: await backingChain(file) };
  } catch (err) {
    if (err instanceof RumError && err.code === 'TOOL_MISSING') throw err;
    if (!(await lstat(file).then(() => true, () => false))) return 'gone';
    const error = (err as Error).message;
    const files: string[] = [];
    for (let p = resolve(file); files.length < 64; ) {
      files.push(p);
      const info = await imageInfo(p).catch((e: unknown) => {
        if (e instanceof RumError && e.code === 'TOOL_MISSING') throw e;
        return undefined;
      });
      if (!info?.backingFile || info.backingFile.startsWith('json:')) break;
      p = resolve(dirname(p), info.backingFile);
    }
    return { files, error };
  }
}

/** Paths in the state record's data, read as loosely as JSON allows: a record the engine would
 * refuse still names what its VM was built from. */
async function readRecorded(path: string): Promise<Pick<VmUse, 'recorded' | 'images'>> {
  let nodes: unknown;
  try {
    nodes = (JSON.parse(await readFile(path, 'utf8')) as { nodes?: unknown } | null)?.nodes;
  } catch {
    return { recorded: [], images: [] }; // missing or not JSON: the chains are all there is
  }
  if (typeof nodes !== 'object' || nodes === null) return { recorded: [], images: [] };
  const recorded: string[] = [];
  const walk = (v: unknown, depth: number): void => {
    if (typeof v === 'string' && v.startsWith('/')) recorded.push(v);
    else if (typeof v === 'object' && v !== null && depth < 8) for (const x of Object.values(v)) walk(x, depth + 1);
  };
  const all = nodes as Record<string, { data?: unknown } | undefined>;
  for (const rec of Object.values(all)) walk(rec?.data, 0);
  // base-image: what the disk sits on; layer: a provisioned layer between them.
  const images = ['base-image', 'layer']
    .map((id) => (Object.hasOwn(all, id) ? (all[id]?.data as { path?: unknown } | undefined)?.path : undefined))
    .filter((p): p is string => typeof p === 'string' && p.startsWith('/'));
  return { recorded, images };
}

/** Whether `p` lies inside the directory `dir` (both resolved). */
export function inside(p: string, dir: string): boolean {
  return p.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}
