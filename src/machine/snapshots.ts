// Owns: a machine's snapshots. A snapshot is a read-only qcow2 layer, the disk frozen as it
// was; the disk (VmFile.overlay, always that path) goes on as a fresh overlay above it, and a
// restore puts a new empty overlay on a layer: both O(1), on any libvirt, with any mounts.
// snapshots.json names the layers and, while an operation runs, what it is doing (`pending`):
// a killed command is finished or undone by the next one (`settle`), never left half-done.
// The qcow2 headers say which file backs which; the record is kept in step with them.
// Not: when (the commands decide), nor the domain's definition (the graph redefines it).
import { chmod, link, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { RumError } from '../errors.js';
import { writeAtomic } from '../files/atomic.js';
import type { VmDir } from '../paths.js';

export interface Snapshot {
  name: string;
  /** Its layer's file name in layers/, without .qcow2: made by rum, never from user input. */
  id: string;
  created: string; // ISO time
  /** The snapshot whose layer this one's sits on; null: the base image. */
  parent: string | null;
}

type Pending =
  | { op: 'save'; name: string; id: string; tmp: string }
  | { op: 'restore'; name: string; id: string; tmp: string; topIno: number }
  | { op: 'rm'; name: string; id: string };

export interface SnapshotRecord {
  snapshots: Snapshot[];
  /** What the disk sits on (a snapshot's id, null: the base image), and which restore made it:
   * the running domain's key, so a restored disk is booted afresh. */
  disk: { on: string | null; restored?: string };
  pending?: Pending;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ID = /^[0-9a-z]{6,32}$/;
const TMP = /\/disk\.qcow2\.next-[0-9a-f]{12}$/;
const EMPTY: SnapshotRecord = { snapshots: [], disk: { on: null } };

/** Refuses a snapshot name that could not be shown or typed back safely. */
export function checkSnapshotName(name: string): string {
  if (!NAME.test(name))
    throw new RumError('USAGE', `${JSON.stringify(name)} is not a snapshot name`, 'use letters, digits, ".", "_" and "-" (up to 64, starting with a letter or digit)');
  return name;
}

export const layersDir = (vm: VmDir) => vm.path('layers');
export const layerPath = (vm: VmDir, id: string) => join(vm.path('layers'), `${id}.qcow2`);

/** The record, or an empty one. Cheap (one small file): the graph's inputs read it every run. */
export async function readSnapshots(vm: VmDir): Promise<SnapshotRecord> {
  let text: string;
  try {
    text = await readFile(vm.path('snapshots'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return EMPTY;
    throw err;
  }
  const rec = parseRecord(text);
  if (!rec)
    throw new RumError(
      'STATE',
      `${vm.path('snapshots')} is damaged: rum cannot tell which layers the disk sits on`,
      `the layers are in ${layersDir(vm)}; \`qemu-img info --backing-chain ${vm.path('overlay')}\` shows the disk's chain. Move the file away and \`rum snapshot list\` starts an empty record`,
    );
  return rec;
}

/** The layers under the disk, nearest first: the chain down to (not including) the base image. */
export function chainOf(rec: SnapshotRecord, vm: VmDir): string[] {
  const byId = new Map(rec.snapshots.map((s) => [s.id, s]));
  const out: string[] = [];
  for (let id = rec.disk.on; id !== null && out.length <= rec.snapshots.length; id = byId.get(id)?.parent ?? null) out.push(layerPath(vm, id));
  return out;
}

/** The snapshots the disk sits on, by name, nearest first. */
export function chainNames(rec: SnapshotRecord): string[] {
  const byId = new Map(rec.snapshots.map((s) => [s.id, s]));
  const names: string[] = [];
  for (let id = rec.disk.on; id !== null && names.length <= rec.snapshots.length; id = byId.get(id)?.parent ?? null) names.push(byId.get(id)?.name ?? id);
  return names;
}

/** "on s3 ← s1 ← base image; snapshots: s1, s2, s3"; undefined: there are none. */
export function describeChain(rec: SnapshotRecord): string | undefined {
  if (rec.snapshots.length === 0) return undefined;
  return `on ${[...chainNames(rec), 'base image'].join(' ← ')}; snapshots: ${rec.snapshots.map((s) => s.name).join(', ')}`;
}

/** Notes the disk's layers on each machine's overlay node, for `rum graph` and `rum status`. */
export async function noteLayers(plan: { nodes: { rule: { id: string }; machine: string; note?: string }[] }, machines: { name: string; vm: VmDir }[]): Promise<void> {
  for (const n of plan.nodes) {
    const m = n.rule.id === 'overlay' ? machines.find((x) => x.name === n.machine) : undefined;
    const note = m && describeChain(await readSnapshots(m.vm).catch(() => EMPTY));
    if (note) n.note = note;
  }
}

function parseRecord(text: string): SnapshotRecord | undefined {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    return undefined;
  }
  const r = j as Partial<SnapshotRecord> | null;
  const idOrNull = (v: unknown) => v === null || (typeof v === 'string' && ID.test(v));
  if (!r || !Array.isArray(r.snapshots) || typeof r.disk !== 'object' || r.disk === null || !idOrNull(r.disk.on)) return undefined;
  for (const s of r.snapshots as unknown[]) {
    const x = s as Partial<Snapshot> | null;
    if (!x || typeof x.name !== 'string' || !NAME.test(x.name) || typeof x.id !== 'string' || !ID.test(x.id) || typeof x.created !== 'string' || !idOrNull(x.parent)) return undefined;
  }
  if (r.disk.restored !== undefined && typeof r.disk.restored !== 'string') return undefined;
  const p = r.pending as (Partial<Pending> & { tmp?: unknown; topIno?: unknown; name?: unknown }) | undefined;
  if (p !== undefined && (typeof p !== 'object' || !['save', 'restore', 'rm'].includes(p.op as string) || typeof p.id !== 'string' || !ID.test(p.id))) return undefined;
  if (p !== undefined && (typeof p.name !== 'string' || !NAME.test(p.name))) return undefined;
  // The new top's name is rum's own (see tmpTop): a record naming any other path is damaged.
  if (p !== undefined && p.op !== 'rm' && (typeof p.tmp !== 'string' || !TMP.test(p.tmp))) return undefined;
  if (p?.op === 'restore' && typeof p.topIno !== 'number') return undefined;
  return r as SnapshotRecord;
}

/** What the commands need of the machine while they work on its disk. */
export interface DiskHost {
  vm: VmDir;
  /** The guest is running (or paused) on the disk: the new top must go through libvirt. */
  live(): Promise<boolean>;
  /** The guest's memory is saved (rum suspend): its saved definition names the disk's chain. */
  suspended(): Promise<boolean>;
  /** Moves the running guest onto `file` (a new top made here). */
  moveTop(file: string): Promise<void>;
  /** The file the running guest's disk is open on, or undefined. */
  liveTop(): Promise<string | undefined>;
  /** Lets QEMU's user into a new file of the disk's, as at every start. */
  grant(file: string, write: boolean): Promise<void>;
}

/**
 * A machine's snapshots, operated under the project's lock (the commands take it): each
 * operation first settles what a killed one left.
 */
export class Snapshots {
  constructor(private readonly host: DiskHost) {}

  private get vm(): VmDir {
    return this.host.vm;
  }

  private async write(rec: SnapshotRecord): Promise<void> {
    await writeAtomic(this.vm.path('snapshots'), `${JSON.stringify(rec, null, 2)}\n`);
  }

  async list(): Promise<SnapshotRecord> {
    return this.settle();
  }

  /** The disk frozen as a layer named `name`; the guest goes on on a new top above it. */
  async save(name: string): Promise<Snapshot> {
    checkSnapshotName(name);
    const rec = await this.settle();
    if (rec.snapshots.some((s) => s.name === name))
      throw new RumError('USAGE', `a snapshot named ${name} exists already`, `\`rum snapshot rm ${name}\` first, or choose another name`);
    const { createOverlay, imageInfo } = await import('../image/qemu-img.js');
    const id = await newId();
    const top = this.vm.path('overlay');
    const tmp = `${top}.next-${id}`; // not an atomic.ts temp name: no sweep may remove it while QEMU writes it
    const layer = layerPath(this.vm, id);
    const size = (await imageInfo(top)).virtualSize;
    await mkdir(layersDir(this.vm), { recursive: true, mode: 0o711 });
    await this.write({ ...rec, pending: { op: 'save', name, id, tmp } });
    // The new top names the layer by the path the disk's file is about to have as well.
    await createOverlay(tmp, { backing: layer, backingFormat: 'qcow2', sizeBytes: size, unsafe: true });
    await verifyTop(tmp, layer, { backingYet: false });
    await link(top, layer);
    if (await this.host.live()) {
      await this.host.grant(tmp, true);
      await this.host.moveTop(tmp);
    }
    await rename(tmp, top); // the commit point: the disk's name is the new top's
    return this.commitSave(rec, { name, id });
  }

  private async commitSave(rec: SnapshotRecord, p: { name: string; id: string }): Promise<Snapshot> {
    const layer = layerPath(this.vm, p.id);
    await chmod(layer, 0o444);
    const snap: Snapshot = { name: p.name, id: p.id, created: new Date().toISOString(), parent: rec.disk.on };
    const { pending: _, ...rest } = rec;
    await this.write({ ...rest, snapshots: [...rec.snapshots.filter((s) => s.id !== p.id), snap], disk: { ...rec.disk, on: p.id } });
    return snap;
  }

  /** The disk as it was at `name`: a new empty top on its layer; what the old top held is gone.
   * The guest must be off (the command stops it first). */
  async restore(name: string): Promise<Snapshot> {
    const rec = await this.settle();
    const snap = this.named(rec, name);
    if (await this.host.live()) throw new RumError('STATE', `the guest is running: a restore needs it off`, '`rum down` first');
    const { createOverlay, imageInfo } = await import('../image/qemu-img.js');
    const layer = layerPath(this.vm, snap.id);
    const top = this.vm.path('overlay');
    const tmp = `${top}.next-${await newId()}`;
    const topIno = (await stat(top).catch(() => undefined))?.ino ?? -1; // -1: the disk was lost
    await this.write({ ...rec, pending: { op: 'restore', name, id: snap.id, tmp, topIno } });
    await createOverlay(tmp, { backing: layer, backingFormat: 'qcow2', sizeBytes: (await imageInfo(layer)).virtualSize });
    await verifyTop(tmp, layer);
    await rename(tmp, top);
    return this.commitRestore(rec, snap.id);
  }

  private async commitRestore(rec: SnapshotRecord, id: string): Promise<Snapshot> {
    const { pending: _, ...rest } = rec;
    await this.write({ ...rest, disk: { on: id, restored: `${id}@${Date.now()}` } });
    return rec.snapshots.find((s) => s.id === id)!;
  }

  /**
   * Forgets `name` and deletes its layer. A layer others sit on is merged into each of them
   * first (qemu-img rebase keeps what each shows), so no chain ever breaks. The disk itself is
   * rebased only while the guest is off.
   */
  async remove(name: string): Promise<void> {
    const rec = await this.settle();
    const snap = this.named(rec, name);
    // A running QEMU holds every layer of its chain open: none of them can be rewritten under it.
    if (chainOf(rec, this.vm).includes(layerPath(this.vm, snap.id)) && (await this.host.live()))
      throw new RumError('STATE', `the running guest reads snapshot ${name}'s layer: it cannot be merged away while the guest runs`, `\`rum down\` first, then \`rum snapshot rm ${name}\` again`);
    await this.write({ ...rec, pending: { op: 'rm', name, id: snap.id } });
    await this.finishRemove(rec, snap);
  }

  private async finishRemove(rec: SnapshotRecord, snap: Snapshot): Promise<void> {
    const { imageInfo, rebase } = await import('../image/qemu-img.js');
    const layer = layerPath(this.vm, snap.id);
    const children = rec.snapshots.filter((s) => s.parent === snap.id).map((s) => layerPath(this.vm, s.id));
    if (rec.disk.on === snap.id) children.push(this.vm.path('overlay'));
    if (children.length > 0) {
      // What the layer itself sits on, as its header says (the base image, for the first layer).
      const below = await imageInfo(layer).catch(() => undefined);
      for (const child of children) {
        const ro = child !== this.vm.path('overlay');
        const info = await imageInfo(child);
        if (info.backingFile === layer) {
          if (!below?.backingFile) throw new RumError('STATE', `the layer ${layer} names no backing file: rum cannot merge it`, `\`qemu-img info --backing-chain ${child}\` shows the chain`);
          if (ro) await chmod(child, 0o644);
          await rebase(child, { backing: below.backingFile, backingFormat: below.backingFormat ?? 'qcow2' });
        } // else merged already, by a run that was killed after it
        if (ro) await chmod(child, 0o444);
      }
    }
    const { pending: _, ...rest } = rec;
    await this.write({
      ...rest,
      snapshots: rec.snapshots.filter((s) => s.id !== snap.id).map((s) => (s.parent === snap.id ? { ...s, parent: snap.parent } : s)),
      disk: rec.disk.on === snap.id ? { ...rec.disk, on: snap.parent } : rec.disk,
    });
    await rm(layer, { force: true });
  }

  /** A fresh disk made by `make` (--reset), and every snapshot dropped: the record first, the
   * layers once the new disk stands (until then the old one may still be read from them). */
  async dropAll(make: () => Promise<void>): Promise<void> {
    await rm(this.vm.path('snapshots'), { force: true });
    await make();
    await rm(layersDir(this.vm), { recursive: true, force: true });
  }

  /** The snapshot called `name`; none: an error naming those there are. */
  named(rec: SnapshotRecord, name: string): Snapshot {
    checkSnapshotName(name);
    const snap = rec.snapshots.find((s) => s.name === name);
    if (!snap)
      throw new RumError('USAGE', `there is no snapshot named ${name}`, rec.snapshots.length > 0 ? `snapshots: ${rec.snapshots.map((s) => s.name).join(', ')}` : 'there are no snapshots: `rum snapshot save NAME` makes one');
    return snap;
  }

  /**
   * Finishes or undoes what a killed operation left (its `pending`), then removes files of the
   * disk's that no record names: never one the disk's chain still reads.
   */
  async settle(): Promise<SnapshotRecord> {
    let rec = await readSnapshots(this.vm);
    const p = rec.pending;
    if (p && p.op !== 'rm' && p.tmp !== `${this.vm.path('overlay')}.next-${p.tmp.slice(-12)}`)
      throw new RumError('STATE', `${this.vm.path('snapshots')} is damaged: its operation names a file outside ${this.vm.dir}`, 'move the file away; `rum snapshot list` then starts an empty record');
    // A layer under the running guest (or under a suspended one's saved memory) cannot be merged.
    if (p?.op === 'rm' && chainOf(rec, this.vm).includes(layerPath(this.vm, p.id)) && ((await this.host.live()) || (await this.host.suspended())))
      throw new RumError('STATE', `a \`rum snapshot rm ${p.name}\` was interrupted, and the guest now runs on that layer: it is finished once the guest is off`, '`rum down` first, then any `rum snapshot` command finishes it');
    if (p?.op === 'save') rec = await this.settleSave(rec, p);
    else if (p?.op === 'restore') rec = await this.settleRestore(rec, p);
    else if (p?.op === 'rm') {
      const snap = rec.snapshots.find((s) => s.id === p.id);
      if (snap) await this.finishRemove(rec, snap);
      rec = await readSnapshots(this.vm);
    }
    await this.sweep(rec);
    return rec;
  }

  private async settleSave(rec: SnapshotRecord, p: Extract<Pending, { op: 'save' }>): Promise<SnapshotRecord> {
    const top = this.vm.path('overlay');
    const layer = layerPath(this.vm, p.id);
    const [t, l] = await Promise.all([stat(top), stat(layer).catch(() => undefined)]);
    const { pending: _, ...undone } = rec;
    if (l && l.ino !== t.ino) {
      await rm(p.tmp, { force: true }); // a leftover only: the disk's name was moved already
      await this.commitSave(rec, p); // the new top took the disk's name: only the record was missing
    } else if (l && ((await this.host.liveTop()) === p.tmp || (await holdsData(p.tmp)))) {
      // The guest was moved onto the new top (it runs on it, or it wrote to it and stopped since):
      // it takes the disk's name. A top that was never used holds no data of its own.
      await rename(p.tmp, top);
      await this.commitSave(rec, p);
    } else {
      // Nothing moved: the disk is as it was. The layer, if made, is only a second name of it.
      await rm(p.tmp, { force: true });
      if (l) await rm(layer, { force: true });
      await this.write(undone);
    }
    return readSnapshots(this.vm);
  }

  private async settleRestore(rec: SnapshotRecord, p: Extract<Pending, { op: 'restore' }>): Promise<SnapshotRecord> {
    const tmpLeft = await stat(p.tmp).then(() => true, () => false);
    if (!tmpLeft) {
      // Renamed (the disk now sits on the layer), or never made: the header tells.
      const { imageInfo } = await import('../image/qemu-img.js');
      const now = await stat(this.vm.path('overlay')).catch(() => undefined);
      if (now && now.ino !== p.topIno && (await imageInfo(this.vm.path('overlay'))).backingFile === layerPath(this.vm, p.id)) {
        await this.commitRestore(rec, p.id);
        return readSnapshots(this.vm);
      }
    }
    await rm(p.tmp, { force: true });
    const { pending: _, ...undone } = rec;
    await this.write(undone);
    return undone;
  }

  /** Layers no snapshot names and new tops no operation is making: left by a killed run. */
  private async sweep(rec: SnapshotRecord): Promise<void> {
    const named = new Set(rec.snapshots.map((s) => `${s.id}.qcow2`));
    const layers = await readdir(layersDir(this.vm)).catch(() => [] as string[]);
    const strays = layers.filter((f) => !named.has(f));
    const base = this.vm.path('overlay');
    const dir = await readdir(this.vm.dir).catch(() => [] as string[]);
    const tops = dir.filter((f) => f.startsWith(`${base.slice(this.vm.dir.length + 1)}.next-`)).map((f) => join(this.vm.dir, f));
    if (strays.length === 0 && tops.length === 0) return;
    const keep = new Set(await this.readChain());
    const live = await this.host.liveTop();
    for (const f of strays.map((f) => join(layersDir(this.vm), f))) if (!keep.has(f)) await rm(f, { force: true });
    for (const f of tops) if (f !== live && !keep.has(f)) await rm(f, { force: true });
  }

  /** The disk's chain as the qcow2 headers say, top first. */
  private async readChain(): Promise<string[]> {
    const { imageInfo } = await import('../image/qemu-img.js');
    const chain: string[] = [];
    for (let f: string | undefined = this.vm.path('overlay'); f !== undefined && chain.length < 1000; ) {
      chain.push(f);
      f = (await imageInfo(f).catch(() => undefined))?.backingFile;
    }
    return chain;
  }
}

async function newId(): Promise<string> {
  const { randomBytes } = await import('node:crypto');
  return randomBytes(6).toString('hex');
}

/** A new top is sound and names its layer before it takes the disk's name: qemu-img can meet a
 * full disk and still exit 0. `backingYet: false`: the layer gets its name only after this. */
async function verifyTop(tmp: string, layer: string, opts: { backingYet?: boolean } = {}): Promise<void> {
  const { check, imageInfo } = await import('../image/qemu-img.js');
  const [info, sound] = await Promise.all([imageInfo(tmp), opts.backingYet === false ? Promise.resolve({ ok: true, message: '' }) : check(tmp, 'qcow2')]);
  if (!sound.ok || info.backingFile !== layer || info.format !== 'qcow2')
    throw new RumError('IMAGE', `the new disk top ${tmp} is not sound: ${sound.ok ? 'it does not name its layer' : sound.message}`, 'nothing was changed; free some space (df -h) and try again');
}

/** Whether a top holds data of its own (the guest wrote to it), as `qemu-img map` says. */
async function holdsData(path: string): Promise<boolean> {
  const { mapsOwnData } = await import('../image/qemu-img.js');
  return mapsOwnData(path).catch(() => true); // unreadable: never thrown away on a guess
}
