// `rum snapshot save|list|restore|rm [MACHINE] NAME`: the VM's disk frozen as read-only layers
// (src/machine/snapshots.ts). A save works on a running guest (its filesystems flushed first; the
// snapshot is crash-consistent); a restore stops the guest, after asking, and `rum up` boots the
// restored disk. Afterwards the domain's definition is brought in step with the new chain.
import { RumError } from '../../errors.js';
import { execute } from '../../graph/execute.js';
import { makePlan } from '../../graph/plan.js';
import type { Machine } from '../../machine/machine.js';
import { engineFor, lockProject, openProject, pick, type OpenProject } from '../../machine/project.js';
import { layerPath, type Snapshot, type SnapshotRecord } from '../../machine/snapshots.js';
import { diskSize, Output } from '../output.js';
import { confirm } from '../prompt.js';
import { throwIfFailed, type CommonOptions } from './common.js';

type Op = 'save' | 'list' | 'restore' | 'rm';

export interface SnapshotOptions extends CommonOptions {
  yes?: boolean;
}

export const snapshotSave = (a: string, b: string | undefined, opts: SnapshotOptions) => run('save', [a, b], opts);
export const snapshotRestore = (a: string, b: string | undefined, opts: SnapshotOptions) => run('restore', [a, b], opts);
export const snapshotRm = (a: string, b: string | undefined, opts: SnapshotOptions) => run('rm', [a, b], opts);
export const snapshotList = (a: string | undefined, opts: SnapshotOptions) => run('list', [a], opts);

async function run(op: Op, words: (string | undefined)[], opts: SnapshotOptions): Promise<number> {
  const out = new Output(opts);
  const o = await openProject({ config: opts.config, mountSources: false });
  const given = words.filter((w): w is string => typeof w === 'string' && w !== '');
  // With machines, the machine comes first; `list` takes only it.
  const takesName = op !== 'list';
  const machineWord = o.project.single ? undefined : takesName ? (given.length === 2 ? given[0] : undefined) : given[0];
  if (o.project.single && given.length > (takesName ? 1 : 0))
    throw new RumError('USAGE', `${o.project.file} declares one VM: name only the snapshot`, `rum snapshot ${op}${takesName ? ' NAME' : ''}`);
  const m = pick(o, machineWord === undefined ? [] : [machineWord], { one: true })[0]!;
  const name = takesName ? given.at(-1)! : undefined;
  const where = o.project.single ? '' : ` ${m.name}`;

  if (!o.claimed.has(m)) {
    if (op !== 'list') throw new RumError('STATE', `VM ${m.domain} has no disk yet`, `\`rum up${where}\` first`);
    return show(out, opts, m, { snapshots: [], disk: { on: null } });
  }
  const lock = await lockProject(o, [m], { noWait: opts.wait === false, onWait: (pid) => out.info(`waiting for rum (pid ${pid})...`) });
  try {
    const snaps = await m.snapshots();
    const state = (await m.domainFacts()).state;
    if (op === 'list') return show(out, opts, m, await snaps.list());
    if (op === 'save') {
      if (state === 'suspended')
        throw new RumError('STATE', `the guest is suspended: its saved memory belongs to the disk as it is`, `\`rum up${where}\` (then save), or \`rum down${where}\` first: nothing was changed`);
      if (state === 'running') await flush(o, m, out); // a paused guest cannot answer; its disk waits as it is
      const snap = await snaps.save(name!);
      await redefine(o, m);
      out.info(`saved snapshot ${snap.name} of ${m.domain}${state === 'running' ? ' (the guest runs on, on a new layer)' : ''}`);
      if (opts.json) out.data({ vm: m.domain, snapshot: snapshotJson(await snaps.list(), snap, m) });
      return 0;
    }
    if (op === 'restore') {
      snaps.named(await snaps.list(), name!); // an unknown name is said before anything is asked
      const on = state !== undefined && state !== 'shut off' && state !== 'crashed';
      if (!opts.yes)
        await confirm(
          out,
          `restoring ${name} ${on ? (state === 'suspended' ? "discards the guest's saved memory and " : 'stops the guest and ') : ''}loses what was written to its disk since that snapshot. Continue?`,
        );
      if (state === 'suspended') await m.discardSaved();
      else if (on) {
        out.info('stopping the guest');
        // A paused guest would never see the ACPI request: it is stopped at once.
        await m.stop({ timeoutMs: state === 'paused' ? 0 : 60_000, force: true, progress: (t) => out.waiting(t) });
        out.clearSpinner();
      }
      const snap = await snaps.restore(name!);
      await redefine(o, m);
      out.info(`restored snapshot ${snap.name}: \`rum up${where}\` boots the guest from it`);
      if (opts.json) out.data({ vm: m.domain, snapshot: snapshotJson(await snaps.list(), snap, m) });
      return 0;
    }
    if (state === 'suspended')
      throw new RumError('STATE', `the guest is suspended: its saved memory belongs to the disk's chain as it is`, `\`rum up${where}\` or \`rum down${where}\` first: nothing was changed`);
    await snaps.remove(name!);
    await redefine(o, m);
    out.info(`removed snapshot ${name}`);
    if (opts.json) out.data({ vm: m.domain, removed: name });
    return 0;
  } finally {
    out.clearSpinner();
    await lock.release();
  }
}

/** The guest's page cache written out: what it wrote is in the layer, not lost with its memory. */
async function flush(o: OpenProject, m: Machine, out: Output): Promise<void> {
  try {
    const { guestShell } = await import('../guest.js');
    const shell = await guestShell({ o, m });
    try {
      const r = await shell.execText('sync');
      if (r.code === 0) return;
    } finally {
      await shell.close();
    }
  } catch {
    // said below
  }
  out.notice("the guest's filesystems could not be flushed over SSH: the snapshot holds what had reached its disk (like after a power cut)");
}

/**
 * The domain's definition names the new chain (and, after a save of a running guest, no longer
 * libvirt's name for the new top): domain-xml and defined-domain are brought up to date now,
 * when nothing else is stale; else the next `rum up` does it before anything starts.
 */
async function redefine(o: OpenProject, m: Machine): Promise<void> {
  if ((await m.domainFacts()).inactiveXml === undefined) return;
  const q = (id: string) => (o.project.single ? id : `${m.name}/${id}`);
  const e = await engineFor(o, [m], { targets: [q('defined-domain')] });
  const plan = await makePlan(e);
  const ours = new Set([q('domain-xml'), q('defined-domain')]);
  if (plan.nodes.some((n) => n.state !== 'fresh' && !ours.has(n.id))) return;
  const result = await execute(e, plan, {});
  await e.digests.save();
  throwIfFailed(result);
}

function snapshotJson(rec: SnapshotRecord, s: Snapshot, m: Machine) {
  const byId = new Map(rec.snapshots.map((x) => [x.id, x.name]));
  return {
    name: s.name,
    created: s.created,
    parent: s.parent === null ? null : (byId.get(s.parent) ?? null),
    current: rec.disk.on === s.id,
    layer: layerPath(m.vm, s.id),
  };
}

async function show(out: Output, opts: SnapshotOptions, m: Machine, rec: SnapshotRecord): Promise<number> {
  const { stat } = await import('node:fs/promises');
  const rows = await Promise.all(
    rec.snapshots.map(async (s) => {
      const j = snapshotJson(rec, s, m);
      const st = await stat(j.layer).catch(() => undefined);
      return { ...j, sizeBytes: st ? st.blocks * 512 : null };
    }),
  );
  if (opts.json) {
    out.data({ vm: m.domain, snapshots: rows, disk: { on: rec.disk.on === null ? null : (rows.find((r) => r.current)?.name ?? null) } });
    return 0;
  }
  if (rows.length === 0) {
    out.out('no snapshots');
    return 0;
  }
  const table = [['NAME', 'CREATED', 'SIZE', 'ON'], ...rows.map((r) => [`${r.current ? '*' : ' '} ${r.name}`, r.created.replace('T', ' ').replace(/\.\d+Z$/, 'Z'), r.sizeBytes === null ? '-' : diskSize(r.sizeBytes), r.parent ?? 'base image'])];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  for (const r of table) out.out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
  out.info('* the disk sits on this snapshot');
  return 0;
}
