// Owns: every VM of this user on this machine, found from the data directory (each directory
// under vmsRoot() holding owner.json and/or state.json), with what rum recorded there (project,
// libvirt URI, SSH address, disk use) and each domain's state from one libvirt question per URI.
// Reads no rum.yaml: a listing of ten projects must not parse ten configs.
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { StateStore } from './graph/state.js';
import { RumError } from './errors.js';
import { listDomains, titleNames, type DomainListing } from './libvirt/domain-list.js';
import { VmFile, vmsRoot } from './paths.js';

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** owner.json written before rum recorded the URI there held only `config`: such a VM was made
 * with the default URI unless its rum.yaml said otherwise, which only that file knows. The next
 * command that locks the VM (up, down, build...) records the real one. */
export const ASSUMED_URI = 'qemu:///system';

/** What the data directory says about one VM. */
export interface VmRecord {
  name: string;
  dir: string;
  config: string | null; // null: owner.json missing or unreadable
  uri: string | null; // null: owner.json missing or unreadable, so where to ask is not known
  uriAssumed: boolean;
  user: string | null; // the SSH user, when owner.json records it
  ssh: { host: string; port: number } | null; // ssh-ready's recorded address
  diskBytes: number | null; // blocks the overlay and its snapshot layers really take (a sparse qcow2 is far below its size)
  unreadable: { file: string; why: string }[];
}

/** One row of `rum list`; the JSON shape (names as in `rum status --json`). */
export interface ListedVm {
  vm: string;
  config: string | null;
  uri: string | null;
  dir: string;
  /** libvirt's word ('running', 'shut off', 'paused', ...), 'absent' (no domain of rum's with
   * this name), or 'unknown' (libvirt could not be asked, or where to ask is not recorded). */
  state: string;
  ssh: { host: string; port: number; user: string | null } | null; // only while running
  diskBytes: number | null;
}

/** What the listing could not tell on its own: data, worded once by the command. */
export type ListNote =
  | { type: 'unreadable'; vm: string; file: string; why: string }
  | { type: 'libvirt-unreachable'; uri: string; vms: string[]; message: string; hint: string | null }
  | { type: 'not-rums'; vm: string; uri: string; title: string }
  | { type: 'uri-assumed'; vms: string[]; uri: string };

export interface VmListing {
  vms: ListedVm[];
  notes: ListNote[];
}

export interface ListOptions {
  env?: NodeJS.ProcessEnv;
  /** How one URI is asked about the VMs on it (tests pass a fake). */
  listDomains?: (uri: string, names: string[]) => Promise<DomainListing>;
}

export async function listVms(opts: ListOptions = {}): Promise<VmListing> {
  const records = await readVmRecords(vmsRoot(opts.env));
  const ask = opts.listDomains ?? ((uri: string, names: string[]) => listDomains(uri, names, { env: opts.env }));
  const uris = [...new Set(records.flatMap((r) => (r.uri === null ? [] : [r.uri])))];
  // Every URI at once (its socket ~2 ms, else a virsh process ~20 ms): the slowest sets the time.
  const answers = new Map(await Promise.all(uris.map(async (u) => [u, await ask(u, records.filter((r) => r.uri === u).map((r) => r.name))] as const)));
  return mergeListing(records, answers);
}

/** The VM directories under `root`, sorted by name. A missing root is no VMs; an unreadable
 * one is the only failure (there is then nothing at all to list). */
export async function readVmRecords(root: string): Promise<VmRecord[]> {
  let entries;
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new RumError('STATE', `cannot read rum's data directory ${root}: ${(err as Error).message}`, `check its permissions (ls -ld ${root})`);
  }
  // rum only makes directories named by a DNS label (VmDir refuses anything else): any other
  // name is not a VM of rum's, and is not shown, whatever its bytes.
  const dirs = entries.filter((e) => e.isDirectory() && DNS_LABEL.test(e.name)).map((e) => e.name);
  const records = await Promise.all(dirs.map((name) => readVmRecord(root, name)));
  return records.filter((r): r is VmRecord => r !== undefined).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

const errMessage = (err: unknown) => (err as Error)?.message ?? String(err);

/** One directory, or undefined when it holds neither owner.json nor state.json (not rum's). */
async function readVmRecord(root: string, name: string): Promise<VmRecord | undefined> {
  const dir = join(root, name);
  const file = (f: keyof typeof VmFile) => join(dir, VmFile[f]);
  const [owner, state, diskBytes] = await Promise.all([readOwnerFile(file('owner')), readSshAddress(file('state')), allocatedBytes(file('overlay'))]);
  if (owner === 'missing' && state === 'missing') return undefined;
  const unreadable: VmRecord['unreadable'] = [];
  if (owner === 'missing') unreadable.push({ file: VmFile.owner, why: 'missing' });
  else if ('why' in owner) unreadable.push({ file: VmFile.owner, why: owner.why });
  if (state !== 'missing' && 'why' in state) unreadable.push({ file: VmFile.state, why: state.why });
  const o = owner !== 'missing' && !('why' in owner) ? owner : undefined;
  return {
    name,
    dir,
    config: o?.config ?? null,
    uri: o ? (o.uri ?? ASSUMED_URI) : null,
    uriAssumed: o !== undefined && o.uri === undefined,
    user: o?.user ?? null,
    ssh: state !== 'missing' && 'address' in state ? state.address : null,
    diskBytes,
    unreadable,
  };
}

type OwnerFile = { config: string; uri?: string; user?: string };

/** owner.json as src/vm.ts writes it: `config`, and since `rum list`, `uri` and `user`. */
async function readOwnerFile(path: string): Promise<OwnerFile | 'missing' | { why: string }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : { why: errMessage(err) };
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    return { why: `not JSON (${errMessage(err)})` };
  }
  const o = v as Record<string, unknown>;
  if (typeof o !== 'object' || o === null || typeof o.config !== 'string') return { why: 'no "config" in it' };
  // The URI goes to virsh as one argument (never a shell); still, only a libvirt URI's shape.
  if (o.uri !== undefined && (typeof o.uri !== 'string' || !/^[a-z][a-z0-9+]*:\/\/\S*$/.test(o.uri))) return { why: '"uri" is not a libvirt URI' };
  if (o.user !== undefined && typeof o.user !== 'string') return { why: '"user" is not a string' };
  return { config: o.config, ...(o.uri !== undefined ? { uri: o.uri as string } : {}), ...(o.user !== undefined ? { user: o.user as string } : {}) };
}

/** ssh-ready's recorded address from the state record (StateStore owns its format). */
async function readSshAddress(path: string): Promise<{ address: { host: string; port: number } | null } | 'missing' | { why: string }> {
  try {
    const exists = await stat(path).then(() => true, (e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? false : Promise.reject(e)));
    if (!exists) return 'missing';
    const a = (await StateStore.open(path)).output('ssh-ready')?.data as { host?: unknown; port?: unknown } | undefined;
    const ok = a && typeof a.host === 'string' && Number.isInteger(a.port) && (a.port as number) > 0 && (a.port as number) < 65536;
    return { address: ok ? { host: a.host as string, port: a.port as number } : null };
  } catch (err) {
    // StateStore's own message names the file and says the record is damaged.
    return { why: err instanceof RumError ? err.message.replace(/^the state record \S+ is not readable: /, '') : errMessage(err) };
  }
}

/** Bytes the overlay and its snapshot layers take on disk (st_blocks are 512-byte units whatever
 * the file system's block size), not their apparent size; null when there is no overlay yet. */
async function allocatedBytes(path: string): Promise<number | null> {
  try {
    const own = (await stat(path)).blocks * 512;
    const layersDir = join(dirname(path), VmFile.layers);
    const layers = await readdir(layersDir).catch(() => [] as string[]);
    const sizes = await Promise.all(layers.map((f) => stat(join(layersDir, f)).then((s) => s.blocks * 512, () => 0)));
    return sizes.reduce((a, b) => a + b, own);
  } catch {
    return null;
  }
}

/**
 * The records with libvirt's answers. A domain counts as this VM's only when its title is
 * `rum: <this VM's rum.yaml>` (rum sets it when it defines the domain); the full check, the
 * owner mark in the domain's XML (tasks/defined-domain.ts), would cost virsh one XML per VM,
 * so the listing trusts the title, which `virsh list --title` prints in its one table (and the
 * socket path reads from the XML it has, to answer the same either way). A domain with another
 * title is reported, and the VM is 'absent': `rum up` would refuse to touch that domain.
 */
export function mergeListing(records: VmRecord[], answers: Map<string, DomainListing>): VmListing {
  const notes: ListNote[] = [];
  for (const r of records) for (const u of r.unreadable) notes.push({ type: 'unreadable', vm: r.name, file: u.file, why: u.why });
  const vms = records.map((r): ListedVm => {
    const answer = r.uri === null ? undefined : answers.get(r.uri);
    let state = 'unknown';
    if (answer?.ok && r.config !== null) {
      const d = answer.domains.get(r.name);
      if (!d) state = 'absent';
      else if (titleNames(d.title, r.config)) state = d.state;
      else {
        state = 'absent';
        notes.push({ type: 'not-rums', vm: r.name, uri: r.uri!, title: d.title });
      }
    }
    const ssh = state === 'running' && r.ssh ? { ...r.ssh, user: r.user } : null;
    return { vm: r.name, config: r.config, uri: r.uri, dir: r.dir, state, ssh, diskBytes: r.diskBytes };
  });
  for (const [uri, a] of answers)
    if (!a.ok) notes.push({ type: 'libvirt-unreachable', uri, vms: records.filter((r) => r.uri === uri).map((r) => r.name), message: a.message, hint: a.hint ?? null });
  const assumed = records.filter((r) => r.uriAssumed).map((r) => r.name);
  if (assumed.length > 0) notes.push({ type: 'uri-assumed', vms: assumed, uri: ASSUMED_URI });
  return { vms, notes };
}
