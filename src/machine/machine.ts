// Owns: one machine's lifecycle, shared by the commands and the rules: its config and directory,
// its libvirt connection, what libvirt last said about its domain (forgotten by every operation
// that changes the domain), and the operations: owner, define, start, resume, stop, remove.
// Not: when any of that should happen (the rules in tasks/ and the commands decide).
import { mkdir, open, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Config } from '../config/schema.js';
import { isSessionUri } from '../config/rules.js';
import { RumError } from '../errors.js';
import { pollUntil } from '../files/wait.js';
import { digestOf } from '../graph/digest.js';
import { seeDoctor } from '../host/check.js';
import { Virsh, type DomainState } from '../libvirt/virsh.js';
import type { VmDir } from '../paths.js';
import { shellQuote } from '../ssh/openssh.js';

export interface DomainFacts {
  state: DomainState | undefined; // undefined: no such domain
  inactiveXml: string | undefined;
}

/** Whose the domain of this VM's name is: nobody's (absent), this rum.yaml's, or someone else's:
 * another project's (`project` names its rum.yaml, as its own mark says) or not rum's at all. */
export type DomainOwner = { owner: 'absent' } | { owner: 'ours' } | { owner: 'other'; project?: string };

export type StopResult = 'stopped' | 'timeout' | 'not-running';

/** One virsh wrapper per URI per process: machines of one project share it. */
const virshes = new Map<string, Virsh>();
function virshFor(uri: string): Virsh {
  let v = virshes.get(uri);
  if (!v) virshes.set(uri, (v = new Virsh(uri)));
  return v;
}

/** The guest's MAC: stable per VM name, in QEMU's locally administered 52:54:00 range. */
export function macFor(vmName: string): string {
  const h = digestOf(`mac:${vmName}`);
  return `52:54:00:${h.slice(0, 2)}:${h.slice(2, 4)}:${h.slice(4, 6)}`;
}

export class Machine {
  readonly virsh: Virsh;
  private facts?: Promise<DomainFacts>;

  constructor(
    readonly config: Config,
    readonly vm: VmDir,
    readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    this.virsh = virshFor(config.libvirt.uri);
  }

  /** The machine's name in rum.yaml (`web`); a file without machines: the VM name. */
  get name(): string {
    return this.config.machine;
  }

  /** The libvirt domain's name (and the VM directory's). */
  get domain(): string {
    return this.config.name;
  }

  get mac(): string {
    return macFor(this.config.name);
  }

  /** auto: kvm only when it really works here (a /dev/kvm alone is not enough on nested hosts). */
  async domainType(): Promise<{ type: 'kvm' | 'qemu'; why?: string }> {
    const asked = this.config.libvirt.domain_type;
    if (asked !== 'auto') return { type: asked };
    const { kvmUsable } = await import('../libvirt/caps.js');
    const v = await kvmUsable();
    return v.usable ? { type: 'kvm' } : { type: 'qemu', why: v.why };
  }

  /**
   * rum run by root under qemu:///system: QEMU runs as root too, so 9p can keep the guest's owners
   * and root's files are in reach. Anyone else's QEMU is libvirt's own user (libvirt-qemu, qemu):
   * libvirt cannot run QEMU as an ordinary user there (its private files, such as the domain's
   * master key under /var/lib/libvirt/qemu, are not theirs to read), and lends that user the disk
   * images while the domain runs. Session mode: QEMU is the user's own process.
   */
  qemuRunsAs(): { uid: number; gid: number } | undefined {
    return !isSessionUri(this.config.libvirt.uri) && process.getuid?.() === 0 ? { uid: 0, gid: 0 } : undefined;
  }

  /** One look at libvirt, shared by every check and command that asks until the domain changes. */
  domainFacts(): Promise<DomainFacts> {
    if (!this.facts) {
      const p = this.virsh.domainSnapshot(this.domain);
      this.facts = p;
      p.catch(() => {
        if (this.facts === p) this.facts = undefined;
      });
    }
    return this.facts;
  }

  /** What was learnt before may be out of date (another rum may have acted meanwhile). */
  forget(): void {
    this.facts = undefined;
  }

  async owner(): Promise<DomainOwner> {
    const xml = (await this.domainFacts()).inactiveXml;
    if (xml === undefined) return { owner: 'absent' };
    const { readOwnerMark } = await import('../libvirt/domain-xml.js');
    const mark = readOwnerMark(xml);
    if (mark && mark.configFile === this.config.file) return { owner: 'ours' };
    return mark ? { owner: 'other', project: mark.configFile } : { owner: 'other' };
  }

  /** The words for a domain that is not ours (`project` comes from its XML: escape it to print). */
  notOurs(project: string | undefined): { message: string; hint: string } {
    return {
      message:
        `a libvirt domain named "${this.domain}" exists on ${this.config.libvirt.uri} and is not this project's` +
        (project !== undefined ? ` (it belongs to ${project})` : ' (it was not made by rum)'),
      hint: 'rum never changes a domain it does not own: set a different `name:` in rum.yaml',
    };
  }

  /** 'absent' or 'ours'; a domain of this name that is not ours is refused. */
  async owned(): Promise<'absent' | 'ours'> {
    const d = await this.owner();
    if (d.owner === 'other') {
      const { message, hint } = this.notOurs(d.project);
      throw new RumError('LIBVIRT', message, hint);
    }
    return d.owner;
  }

  async define(xmlPath: string): Promise<void> {
    await this.owned();
    await this.changes(() => this.virsh.define(xmlPath));
  }

  /** Starts the defined domain: the disk grown to resources.disk, its network up, its console
   * log the user's, QEMU let into the disk files. A suspended one is restored as it was saved:
   * its disk is not touched (the guest's memory knows its old size). */
  async start(notice: (m: string) => void): Promise<void> {
    if ((await this.domainFacts()).state !== 'suspended') await this.growDisk(notice);
    await this.ensureNetwork(notice);
    await mkdir(dirname(this.vm.path('console')), { recursive: true });
    await ownConsoleLog(this.vm.path('console'));
    // The disk files stay the user's (see keepsOwners): QEMU's user is let in by an ACL, set at
    // every start because --reset and a new seed make new files.
    await this.letQemuIn([{ path: this.vm.path('overlay'), write: true }, { path: this.vm.path('seedIso'), write: false }]);
    await this.changes(() => this.virsh.start(this.domain));
  }

  async resume(): Promise<void> {
    await this.changes(() => this.virsh.resume(this.domain));
  }

  /** Saves the running guest's memory and stops it (libvirt's managed save): the next start
   * restores it. What in the guest blocks a save (mounts) is the caller's to settle first. */
  async suspend(): Promise<void> {
    await this.changes(() => this.virsh.managedSave(this.domain));
  }

  /** Drops a suspended guest's saved memory: the next start boots. */
  async discardSaved(): Promise<void> {
    if ((await this.domainFacts()).state === 'suspended') await this.changes(() => this.virsh.managedSaveRemove(this.domain));
  }

  /** The machine's snapshots: layers under its disk, moved through libvirt while it runs. */
  async snapshots(): Promise<import('./snapshots.js').Snapshots> {
    const { Snapshots } = await import('./snapshots.js');
    const target = 'vda'; // the disk's name in the domain XML rum writes
    return new Snapshots({
      vm: this.vm,
      live: async () => {
        this.forget();
        const s = (await this.domainFacts()).state;
        return s !== undefined && s !== 'shut off' && s !== 'crashed' && s !== 'suspended';
      },
      suspended: async () => (await this.domainFacts()).state === 'suspended',
      liveTop: async () => ((await this.state()) === undefined ? undefined : this.virsh.liveDiskSource(this.domain, target)),
      moveTop: async (file) => {
        const [{ diskSnapshotXml }, { writeAtomic }, { keepsOwners }] = await Promise.all([
          import('../libvirt/disk-snapshot-xml.js'),
          import('../files/atomic.js'),
          import('../host/qemu-reach.js'),
        ]);
        const xml = this.vm.path('diskSnapshotXml');
        await writeAtomic(xml, diskSnapshotXml({ target, file, keepOwners: keepsOwners(this.config.libvirt.uri, this.env) }));
        await this.changes(() => this.virsh.snapshotDisk(this.domain, xml));
      },
      grant: (file, write) => this.letQemuIn([{ path: file, write }]),
    });
  }

  /** ACPI shutdown, waiting up to timeoutMs; then a hard stop when `force`. */
  async stop(opts: { timeoutMs: number; force: boolean; progress?: (m: string) => void }): Promise<StopResult> {
    try {
      if ((await this.virsh.shutdown(this.domain)) === 'not-running') return 'not-running';
      const off = await pollUntil(async ({ leftMs }) => {
        opts.progress?.(`waiting for the guest to power off (${Math.ceil(leftMs / 1000)} s left)`);
        const s = await this.virsh.domainState(this.domain);
        return s === undefined || s === 'shut off' || s === 'crashed';
      }, { everyMs: 500, timeoutMs: opts.timeoutMs, maxTries: 10_000 });
      if (off) return 'stopped';
      if (!opts.force) return 'timeout';
      await this.virsh.destroy(this.domain);
      return 'stopped';
    } finally {
      this.forget();
    }
  }

  /** Pulls the plug and removes the definition: what `destroy` does to the domain. */
  async remove(): Promise<void> {
    await this.changes(async () => {
      await this.virsh.destroy(this.domain);
      await this.virsh.undefine(this.domain, { nvram: true });
    });
  }

  /** The domain's state now, not from what was learnt earlier. */
  state(): Promise<DomainState | undefined> {
    return this.virsh.domainState(this.domain);
  }

  /** Why a paused guest is paused, and what to do: QEMU pauses a guest whose disk cannot be
   * written (the VM directory's filesystem full). */
  async pausedWhy(): Promise<{ why: string; hint: string }> {
    const reason = await this.virsh.stateReason(this.domain);
    return {
      why: `libvirt paused it${reason ? ` (${reason})` : ''}`,
      hint:
        reason === 'I/O error'
          ? `its disk ${this.vm.path('overlay')} could not be written: make room on that filesystem (df -h ${shellQuote(this.vm.dir)}), then \`rum up\` resumes it`
          : '`rum up` resumes it',
    };
  }

  /** The guest stopped or paused while rum waited for it: said at once, with libvirt's reason. */
  async gone(): Promise<Error | undefined> {
    const state = await this.state();
    if (state === 'running' || state === 'in shutdown' || state === 'idle') return undefined;
    if (state === 'paused') {
      const p = await this.pausedWhy();
      return new RumError('FAILED', `the guest stopped running while rum waited for it: ${p.why}`, p.hint);
    }
    return new RumError('FAILED', `the guest is ${state ?? 'no longer defined'}: it stopped while rum waited for it`, `the guest's console: ${this.vm.path('console')}; then \`rum up\``);
  }

  /**
   * The guest's address on its libvirt network: the newest IPv4 lease for its MAC. A VM made again
   * under the same name has the same MAC, and dnsmasq keeps the old leases (the guest's client id
   * is new each first boot), so "the first lease" can be a dead address.
   */
  async lease(): Promise<string | undefined> {
    const leases = await this.virsh.netDhcpLeases(this.config.network.name, this.mac);
    const v4 = (leases ?? []).filter((l) => l.protocol === 'ipv4');
    // 'YYYY-MM-DD HH:MM:SS' sorts as text; the latest expiry is the latest lease.
    return v4.sort((a, b) => (a.expiry < b.expiry ? 1 : a.expiry > b.expiry ? -1 : 0))[0]?.address;
  }

  private async changes<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } finally {
      this.forget();
    }
  }

  /** qemu-img resize up to resources.disk (the guest's growpart does the rest); never shrinks. */
  private async growDisk(notice: (m: string) => void): Promise<void> {
    const { imageInfo, resize } = await import('../image/qemu-img.js');
    const disk = await imageInfo(this.vm.path('overlay'));
    const have = disk.virtualSize;
    const want = this.config.resources.disk;
    if (want > have) {
      notice(`growing the disk from ${have} to ${want} bytes`);
      await resize(this.vm.path('overlay'), want);
    } else if (want < have && !(await madeLarger(disk.backingFile, have))) {
      notice(`resources.disk is below the disk's size (${have} bytes): disks never shrink; \`rum up --reset\` makes a new one`);
    }
  }

  /** Starts a throwaway guest on this machine's libvirt and network (a layer's builder), as
   * start() does this machine's: its console log the user's, QEMU let into its files. libvirt
   * forgets it once it powers off. */
  async startTransient(guest: { xml: string; console: string; files: { path: string; write: boolean }[] }, notice: (m: string) => void): Promise<void> {
    await this.ensureNetwork(notice);
    await ownConsoleLog(guest.console);
    await this.letQemuIn(guest.files);
    await this.virsh.create(guest.xml);
  }

  /** Files that keep their owner (keepsOwners) are opened to QEMU's user by an ACL. */
  private async letQemuIn(files: { path: string; write: boolean }[]): Promise<void> {
    const { grantQemu, keepsOwners } = await import('../host/qemu-reach.js');
    if (keepsOwners(this.config.libvirt.uri, this.env)) await grantQemu(this.config.libvirt.uri, files);
  }

  /** NAT needs its libvirt network: an inactive one is started, a missing one is an error. */
  private async ensureNetwork(notice: (m: string) => void): Promise<void> {
    const { config: c } = this;
    if (c.network.mode !== 'nat') return;
    const name = c.network.name;
    const info = await this.virsh.netInfo(name);
    if (!info)
      throw new RumError(
        'LIBVIRT',
        `libvirt has no network "${name}" on ${c.libvirt.uri}`,
        (name === 'default'
          ? `define it: virsh --connect ${shellQuote(c.libvirt.uri)} net-define /usr/share/libvirt/networks/default.xml, then net-autostart default; or use network.mode: user`
          : 'create it with virsh net-define, or set network.name / network.mode: user') + seeDoctor('network'),
      );
    if (!info.active) {
      notice(`starting libvirt network ${name}`);
      await this.virsh.netStart(name);
    }
  }
}

/** A disk as large as what it sits on was made so (the image or layer is larger than
 * resources.disk): the overlay said so when it made it. */
async function madeLarger(backing: string | undefined, size: number): Promise<boolean> {
  const { imageInfo } = await import('../image/qemu-img.js');
  return backing !== undefined && (await imageInfo(backing).catch(() => undefined))?.virtualSize === size;
}

/** Whether libvirt here runs without networks (a per-user daemon). */
export const sessionMode = (m: Machine) => isSessionUri(m.config.libvirt.uri);

/**
 * virtlogd (root) appends to the console log, and would create it as root's: made here first,
 * the file is the user's. One a root virtlogd made before is replaced (the directory is ours).
 */
async function ownConsoleLog(path: string): Promise<void> {
  const make = async () => (await open(path, 'a', 0o600)).close();
  await make().catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EACCES') throw err;
    await rm(path, { force: true });
    await make();
  });
}

export type { DomainState };
