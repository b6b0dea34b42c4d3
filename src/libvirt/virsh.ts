// Owns: talking to libvirt through `virsh` (and, for the one question fast commands ask, its
// socket), turning its output into types and its failures into
// RumErrors with a hint. Knows virsh, not rules, keys or rum.yaml. "Absent" (no such domain or
// network) is a value, not a failure.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { shellQuote } from '../ssh/openssh.js';
import { RumError } from '../errors.js';
import { seeDoctor } from '../host/check.js';
import { reachHint } from '../host/qemu-reach.js';
import { isSessionUri } from './uri.js';
import { rpcNetworkActive, rpcSnapshot } from './rpc.js';

/** virsh's words, and rum's `suspended`: shut off with libvirt's managed save of its memory. */
export type DomainState = 'running' | 'idle' | 'paused' | 'in shutdown' | 'shut off' | 'suspended' | 'crashed' | 'pmsuspended' | 'unknown';
const DOMAIN_STATES: readonly string[] = ['running', 'idle', 'paused', 'in shutdown', 'shut off', 'crashed', 'pmsuspended'];

/** `domstate --reason` words it `shut off (saved)`; plain `domstate`, `shut off`. */
export function asState(text: string): DomainState {
  const m = /^(.*?)(?: \((.*)\))?$/.exec(text.trim())!;
  if (m[1] === 'shut off' && m[2] === 'saved') return 'suspended';
  return DOMAIN_STATES.includes(m[1]!) ? (m[1] as DomainState) : 'unknown';
}

export interface NetInfo {
  name: string;
  uuid?: string;
  active: boolean;
  persistent: boolean;
  autostart: boolean;
  bridge?: string;
}

export interface DhcpLease {
  expiry: string; // as libvirt prints it: 'YYYY-MM-DD HH:MM:SS', local time of the host
  mac: string;
  protocol: 'ipv4' | 'ipv6';
  address: string; // without the prefix length
  prefix?: number;
  hostname?: string;
}

export interface LibvirtVersion {
  library: string; // the libvirt library virsh uses
  hypervisor?: { name: string; version: string }; // e.g. QEMU 7.2.0
  daemon?: string; // the libvirtd/virtqemud on the other end (absent for in-process drivers)
}

export type AddressSource = 'lease' | 'agent' | 'arp';

/** What went wrong, as far as virsh's (LC_ALL=C) messages tell. */
export type VirshFailureKind =
  | 'no-domain'
  | 'no-network'
  | 'not-running'
  | 'already-active'
  | 'network-inactive'
  | 'no-daemon'
  | 'permission'
  | 'file-access'
  | 'no-kvm'
  | 'no-emulator'
  | 'other';

/** A failed virsh command. `kind` lets callers react without matching messages themselves. */
export class VirshError extends RumError {
  constructor(
    readonly kind: VirshFailureKind,
    readonly command: string,
    readonly stderr: string,
    message: string,
    hint: string | undefined,
    opts?: ErrorOptions,
  ) {
    super('LIBVIRT', message, hint, opts);
  }
}

interface Known {
  kind: VirshFailureKind;
  pattern: RegExp;
  hint?: (m: RegExpExecArray, uri: string) => string;
}

// The one table from virsh's messages to a kind and a hint. First match wins, so specific first.
const KNOWN: readonly Known[] = [
  {
    kind: 'no-daemon',
    pattern: /Failed to connect socket to '([^']+)': (?:No such file or directory|Connection refused)/,
    hint: (m) =>
      `no libvirt daemon is listening on ${m[1]}: start it with "systemctl start libvirtd" ` +
      `(without systemd: "virtlogd -d && libvirtd -d")${seeDoctor('libvirt')}`,
  },
  {
    kind: 'no-daemon',
    pattern: /Cannot find '(libvirtd|virtqemud)'/,
    hint: () => `the libvirt daemon is not installed: apt install libvirt-daemon-system${seeDoctor('libvirt')}`,
  },
  {
    kind: 'permission',
    pattern: /Failed to connect socket to '[^']+': Permission denied|authentication unavailable|authentication failed|not authorized|polkit/i,
    hint: (_m, uri) =>
      !isSessionUri(uri)
        ? `${uri} needs membership of the libvirt group ("sudo usermod -aG libvirt $USER", then log in again), or use qemu:///session${seeDoctor('group')}`
        : `check that this user may use the libvirt socket${seeDoctor('libvirt')}`,
  },
  {
    kind: 'no-daemon',
    pattern: /no connection driver available for/,
    hint: () => `the libvirt daemon has no QEMU driver: apt install libvirt-daemon-system${seeDoctor('libvirt')}`,
  },
  {
    // A daemon that accepted the connection and then went away (stopping, restarting, killed,
    // stuck) or never spoke: nothing it said can be trusted, least of all "no such domain".
    kind: 'no-daemon',
    pattern: /failed to connect to the hypervisor|Disconnected from \S+ due to|End of file while reading data|Cannot (?:recv|write) data|client socket is closed|keepalive timeout|no valid connection/i,
    hint: (_m, uri) => goneHint(uri),
  },
  {
    kind: 'file-access',
    pattern: /(?:Cannot access (?:storage|backing) file|Could not open|Failed to open(?: file)?|cannot open file) '([^']+)'[^\n]*?(?:\(as uid:(\d+)[^)]*\))?: (?:Permission denied|No such file or directory)/i,
    hint: (m, uri) => `${reachHint(m[1]!, uri, m[2] === undefined ? undefined : Number(m[2]))}${seeDoctor('home-access')}`,
  },
  {
    kind: 'network-inactive',
    pattern: /network '([^']*)' is not active/i,
    hint: (m, uri) => `start it: virsh --connect ${shellQuote(uri)} net-start ${m[1]} (and net-autostart ${m[1]} to keep it started)${seeDoctor('network')}`,
  },
  {
    kind: 'no-network',
    pattern: /failed to get network|Network not found|no network with matching/i,
    hint: (_m, uri) => `list the networks with: virsh --connect ${shellQuote(uri)} net-list --all${seeDoctor('network')}`,
  },
  {
    kind: 'no-domain',
    pattern: /failed to get domain|Domain not found|no domain with matching/i,
    hint: (_m, uri) => `list the domains with: virsh --connect ${shellQuote(uri)} list --all`,
  },
  { kind: 'not-running', pattern: /domain is not running/i },
  { kind: 'already-active', pattern: /(?:domain|network) is already (?:active|running)|Domain is already active|Network '[^']*' is already running/i },
  {
    kind: 'no-emulator',
    pattern: /Cannot find QEMU binary|No emulator found|could not find capabilities for arch=\S+ domaintype=qemu/i,
    hint: () => `QEMU is not installed: apt install qemu-system-x86${seeDoctor('qemu')}`,
  },
  {
    kind: 'no-kvm',
    pattern: /KVM is not available|Could not access KVM kernel module|domaintype=kvm|does not support virt type 'kvm'|KVM internal error/i,
    hint: () => `KVM is not usable on this host: use domain type qemu (TCG)${seeDoctor('kvm')}`,
  },
];

function goneHint(uri: string): string {
  return `the libvirt daemon behind ${uri} did not answer: start it (or restart it) with "systemctl restart libvirtd" (without systemd: "virtlogd -d && libvirtd -d")${seeDoctor('libvirt')}`;
}

/**
 * What virsh's stderr means, and what to tell the user (for a connection to `uri`). `signal`:
 * what ended virsh, if anything did. `line`: the line of stderr that told.
 */
export function classifyVirshFailure(stderr: string, uri: string, signal?: NodeJS.Signals | null): { kind: VirshFailureKind; hint?: string; line?: string } {
  // A daemon that closes the connection as virsh writes to it kills virsh by SIGPIPE, silently
  // (measured: one time in three against a socket that accepts and closes).
  if (signal === 'SIGPIPE' && stderr.trim() === '') return { kind: 'no-daemon', hint: goneHint(uri), line: 'the connection to libvirt broke (virsh died of SIGPIPE)' };
  for (const k of KNOWN) {
    const m = k.pattern.exec(stderr);
    if (m) return { kind: k.kind, hint: k.hint?.(m, uri), line: lastMeaningfulLine(lineAt(stderr, m.index)) };
  }
  return { kind: 'other' };
}

/** The whole line of `text` around offset `at`. */
function lineAt(text: string, at: number): string {
  const end = text.indexOf('\n', at);
  return text.slice(text.lastIndexOf('\n', at) + 1, end < 0 ? undefined : end);
}

/** The last line that says something: virsh prints the general failure first, the cause last. */
export function lastMeaningfulLine(stderr: string): string | undefined {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim().replace(/^error:\s*/, ''))
    .filter((l) => l.length > 0);
  return lines.at(-1);
}

export interface VirshOptions {
  /** Added to the environment of every virsh run (tests use it to hide virsh from PATH). */
  env?: NodeJS.ProcessEnv;
}

export class Virsh {
  // LC_ALL=C: the table above matches virsh's English messages.
  private readonly env: NodeJS.ProcessEnv;

  constructor(
    readonly uri: string,
    opts: VirshOptions = {},
  ) {
    this.env = { ...process.env, ...opts.env, LC_ALL: 'C' };
  }

  /** The domain's state, or undefined when there is no such domain. */
  async domainState(name: string): Promise<DomainState | undefined> {
    const r = await this.attempt(['domstate', '--domain', name, '--reason'], ['no-domain']);
    if ('failed' in r) return undefined;
    return asState(r.stdout.trim());
  }

  /**
   * State and persistent definition at once: what every graph, status and no-op up asks. One
   * virsh process running both commands (`a; b`), since each process costs more than its query.
   */
  async domainSnapshot(name: string): Promise<{ state: DomainState | undefined; inactiveXml: string | undefined }> {
    // A local daemon is asked directly first: a virsh process costs ~15 ms, the socket ~1.
    const snap = this.env.RUM_LIBVIRT_RPC === '0' ? undefined : await rpcSnapshot(this.uri, name, { env: this.env });
    if (snap) return { state: snap.state === undefined ? undefined : asState(snap.state), inactiveXml: snap.inactiveXml };
    // The name goes through virsh's own command parser: only plain words go that way.
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) {
      const [state, inactiveXml] = await Promise.all([this.domainState(name), this.dumpxml(name, { inactive: true })]);
      return { state, inactiveXml };
    }
    const r = await this.attempt([`domstate --domain ${name} --reason; dumpxml --domain ${name} --inactive`], ['no-domain'], 'domstate');
    const out = 'failed' in r ? '' : r.stdout;
    // A failed first command leaves its line empty; virsh goes on to the next one.
    const first = out.split('\n', 1)[0]!.trim();
    const xmlAt = out.indexOf('<domain');
    return {
      state: first === '' ? undefined : asState(first),
      inactiveXml: xmlAt < 0 ? undefined : out.slice(xmlAt),
    };
  }

  /** The domain's XML (`inactive`: the persistent definition, not the live one), or undefined. */
  async dumpxml(name: string, opts: { inactive?: boolean } = {}): Promise<string | undefined> {
    const r = await this.attempt(['dumpxml', '--domain', name, ...(opts.inactive ? ['--inactive'] : [])], ['no-domain']);
    return 'failed' in r ? undefined : r.stdout;
  }

  /** Define (or redefine) a persistent domain from an XML file. */
  async define(xmlPath: string): Promise<void> {
    await this.run(['define', '--file', xmlPath]);
  }

  /** Start a transient domain from an XML file: libvirt forgets it once it stops. */
  async create(xmlPath: string): Promise<void> {
    await this.run(['create', '--file', xmlPath]);
  }

  async start(name: string): Promise<'started' | 'already-running'> {
    const r = await this.attempt(['start', '--domain', name], ['already-active']);
    return 'failed' in r ? 'already-running' : 'started';
  }

  /** Why the domain is in its state, as virsh words it ("I/O error", "user"), or undefined. */
  async stateReason(name: string): Promise<string | undefined> {
    const r = await this.attempt(['domstate', '--domain', name, '--reason'], ['no-domain']);
    if ('failed' in r) return undefined;
    return /\((.*)\)\s*$/.exec(r.stdout.trim())?.[1];
  }

  /** Save the running domain's memory (libvirt's managed save) and stop it: `start` restores it. */
  async managedSave(name: string): Promise<void> {
    await this.run(['managedsave', '--domain', name]);
  }

  /** Forget a managed save: the next start boots afresh. */
  async managedSaveRemove(name: string): Promise<void> {
    await this.run(['managedsave-remove', '--domain', name]);
  }

  /**
   * Moves a running domain's disk onto the new top file `xmlPath` names (see disk-snapshot-xml.ts):
   * QEMU writes there from now on and only reads the old file. No snapshot metadata is kept in
   * libvirt: rum's own record names the layers.
   */
  async snapshotDisk(name: string, xmlPath: string): Promise<void> {
    await this.run(['snapshot-create', '--domain', name, '--xmlfile', xmlPath, '--disk-only', '--no-metadata', '--reuse-external', '--atomic']);
  }

  /** The file a running domain's disk `target` (vda) is open on now, or undefined (not running). */
  async liveDiskSource(name: string, target: string): Promise<string | undefined> {
    const xml = await this.dumpxml(name);
    if (xml === undefined) return undefined;
    const { unescapeXml } = await import('./xml.js');
    for (const disk of xml.match(/<disk\b[\s\S]*?<\/disk>/g) ?? []) {
      if (!new RegExp(`<target dev='${target}'`).test(disk)) continue;
      const src = /<source file='([^']*)'/.exec(disk)?.[1];
      return src === undefined ? undefined : unescapeXml(src);
    }
    return undefined;
  }

  /** Let a paused domain run again. */
  async resume(name: string): Promise<void> {
    await this.run(['resume', '--domain', name]);
  }

  /** Ask the guest to power off (ACPI); returns at once. Poll domainState for "shut off". */
  async shutdown(name: string): Promise<'requested' | 'not-running'> {
    const r = await this.attempt(['shutdown', '--domain', name], ['not-running']);
    return 'failed' in r ? 'not-running' : 'requested';
  }

  /** Pull the plug. */
  async destroy(name: string): Promise<'destroyed' | 'not-running' | 'absent'> {
    const r = await this.attempt(['destroy', '--domain', name], ['not-running', 'no-domain']);
    if (!('failed' in r)) return 'destroyed';
    return r.failed === 'no-domain' ? 'absent' : 'not-running';
  }

  /** Remove the persistent definition (a running domain keeps running, as a transient one). */
  async undefine(name: string, opts: { nvram?: boolean } = {}): Promise<'undefined' | 'absent'> {
    // --managed-save: a suspended domain's saved memory goes with it (libvirt refuses otherwise).
    const r = await this.attempt(['undefine', '--domain', name, '--managed-save', ...(opts.nvram ? ['--nvram'] : [])], ['no-domain']);
    return 'failed' in r ? 'absent' : 'undefined';
  }

  /**
   * The domain's IPv4 addresses (loopback left out), or undefined when there is no such domain.
   * Without `source`: the libvirt network's DHCP leases, then the guest agent (if there is one).
   */
  async domifaddr(name: string, opts: { source?: AddressSource } = {}): Promise<string[] | undefined> {
    const sources: AddressSource[] = opts.source ? [opts.source] : ['lease', 'agent'];
    for (const [i, source] of sources.entries()) {
      const last = i === sources.length - 1;
      let r: { stdout: string } | { failed: VirshFailureKind };
      try {
        r = await this.attempt(['domifaddr', '--domain', name, '--source', source], ['no-domain']);
      } catch (err) {
        // A fallback source that is not there (no agent channel, agent not up) is "no address".
        if (!opts.source && err instanceof VirshError && err.kind === 'other') {
          if (last) return [];
          continue;
        }
        throw err;
      }
      if ('failed' in r) return undefined;
      const addrs = parseDomifaddr(r.stdout)
        .filter((a) => a.protocol === 'ipv4' && !a.address.startsWith('127.'))
        .map((a) => a.address);
      if (addrs.length > 0 || last) return addrs;
    }
    return [];
  }

  /** A libvirt network's state, or undefined when there is no such network. */
  async netInfo(name: string): Promise<NetInfo | undefined> {
    const r = await this.attempt(['net-info', '--network', name], ['no-network']);
    return 'failed' in r ? undefined : parseNetInfo(r.stdout);
  }

  /** Whether the network is active; undefined when there is no such network. The daemon's
   * socket is asked first, as for domainSnapshot: every run checks a project's network. */
  async netActive(name: string): Promise<boolean | undefined> {
    if (this.env.RUM_LIBVIRT_RPC !== '0') {
      const r = await rpcNetworkActive(this.uri, name, { env: this.env });
      if (r !== 'unavailable') return r;
    }
    return (await this.netInfo(name))?.active;
  }

  async netStart(name: string): Promise<'started' | 'already-active'> {
    const r = await this.attempt(['net-start', '--network', name], ['already-active']);
    return 'failed' in r ? 'already-active' : 'started';
  }

  /** The network's DHCP leases (only for `mac` when given), or undefined when there is no such network. */
  async netDhcpLeases(name: string, mac?: string): Promise<DhcpLease[] | undefined> {
    const r = await this.attempt(['net-dhcp-leases', '--network', name, ...(mac ? ['--mac', mac] : [])], ['no-network']);
    return 'failed' in r ? undefined : parseDhcpLeases(r.stdout);
  }

  /** Names of all networks, active or not, persistent or not. */
  async netList(): Promise<string[]> {
    return (await this.run(['net-list', '--all', '--name'])).split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  }

  /** The network's XML (`inactive`: the persistent definition, not the live one), or undefined when there is no such network. */
  async netDumpXml(name: string, opts: { inactive?: boolean } = {}): Promise<string | undefined> {
    const r = await this.attempt(['net-dumpxml', '--network', name, ...(opts.inactive ? ['--inactive'] : [])], ['no-network']);
    return 'failed' in r ? undefined : r.stdout;
  }

  /**
   * Define (or redefine) a persistent network, from a file or from XML text, checked against
   * libvirt's schema. A network that is running keeps its live state until it is restarted.
   */
  async netDefine(source: { file: string } | { xml: string }): Promise<void> {
    if ('file' in source) {
      await this.run(['net-define', '--file', source.file, '--validate']);
      return;
    }
    const dir = await mkdtemp(join(tmpdir(), 'rum-net-'));
    try {
      const file = join(dir, 'network.xml');
      await writeFile(file, source.xml, { mode: 0o600 });
      await this.run(['net-define', '--file', file, '--validate']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Stop the network: its bridge and dnsmasq go. Guests attached to it keep running but are cut
   * off for good: on libvirt 9.0 a net-start afterwards makes a new bridge without their tap
   * devices (measured). Change a running network with netUpdateDhcpHost/netUpdateDnsHost instead.
   */
  async netDestroy(name: string): Promise<'destroyed' | 'not-running' | 'absent'> {
    const r = await this.attempt(['net-destroy', '--network', name], ['network-inactive', 'no-network']);
    if (!('failed' in r)) return 'destroyed';
    return r.failed === 'no-network' ? 'absent' : 'not-running';
  }

  /** Remove the persistent definition (a running network keeps running, as a transient one). */
  async netUndefine(name: string): Promise<'undefined' | 'absent'> {
    const r = await this.attempt(['net-undefine', '--network', name], ['no-network']);
    return 'failed' in r ? 'absent' : 'undefined';
  }

  /** Start the network (or not) when the libvirt daemon starts. */
  async netAutostart(name: string, on: boolean): Promise<void> {
    await this.run(['net-autostart', '--network', name, ...(on ? [] : ['--disable'])]);
  }

  /**
   * Add, change or remove one machine's DHCP reservation, in the persistent definition and, when
   * the network runs, in its live state: libvirt rewrites dnsmasq's hosts file and signals it, so
   * attached guests keep their network. An entry is found by its MAC (`delete` sends only the MAC;
   * libvirt would otherwise want every field to match). `absent`: delete/modify found no entry of
   * that MAC; `exists`: add found one with the same MAC, name or address (modify it instead).
   */
  async netUpdateDhcpHost(network: string, op: 'add' | 'delete' | 'modify', host: { mac: string; name: string; ip: string }): Promise<'updated' | 'absent' | 'exists'> {
    const { dhcpHostXml } = await import('./network-xml.js');
    const xml = op === 'delete' ? dhcpHostXml({ mac: host.mac }) : dhcpHostXml(host);
    return this.netUpdate(network, op, 'ip-dhcp-host', xml, {
      absent: /couldn't locate (?:an existing|a matching) dhcp host entry/i,
      exists: /there is an existing dhcp host entry/i,
    });
  }

  /**
   * Add or remove a DNS record (`name` -> `ip`), live and persistent as netUpdateDhcpHost.
   * libvirt 9.0 cannot modify one ("DNS HOST records cannot be modified"): delete, then add.
   * `delete` matches by address only. `exists`: add found a record with that address.
   */
  async netUpdateDnsHost(network: string, op: 'add' | 'delete', host: { ip: string; name: string }): Promise<'updated' | 'absent' | 'exists'> {
    const { dnsHostXml } = await import('./network-xml.js');
    const xml = op === 'delete' ? dnsHostXml({ ip: host.ip }) : dnsHostXml(host);
    return this.netUpdate(network, op, 'dns-host', xml, {
      absent: /couldn't locate a matching DNS HOST record/i,
      exists: /there is already at least one DNS HOST record/i,
    });
  }

  /** net-update, live and persistent; only persistent when the network is not running. */
  private async netUpdate(
    network: string,
    op: 'add' | 'delete' | 'modify',
    section: 'ip-dhcp-host' | 'dns-host',
    xml: string,
    outcomes: { absent: RegExp; exists: RegExp },
  ): Promise<'updated' | 'absent' | 'exists'> {
    const args = ['net-update', '--network', network, '--command', op, '--section', section, '--xml', xml];
    for (const flags of [['--live', '--config'], ['--config']]) {
      try {
        await this.run([...args, ...flags]);
        return 'updated';
      } catch (err) {
        if (!(err instanceof VirshError)) throw err;
        if (flags.includes('--live') && /network is not running/i.test(err.stderr)) continue;
        if (outcomes.absent.test(err.stderr)) return 'absent';
        if (outcomes.exists.test(err.stderr)) return 'exists';
        throw err;
      }
    }
    throw new Error('unreachable');
  }

  /** Names of all domains, running or not. */
  async list(): Promise<string[]> {
    return (await this.run(['list', '--all', '--name'])).split('\n').filter((l) => l.trim().length > 0);
  }

  /** Library, hypervisor and daemon versions. Needs a connection, so it doubles as a ping. */
  async version(): Promise<LibvirtVersion> {
    return parseVersion(await this.run(['version']));
  }

  private async run(args: string[]): Promise<string> {
    const r = await this.attempt(args, []);
    if ('failed' in r) throw new Error('unreachable');
    return r.stdout;
  }

  /**
   * virsh words every failed lookup alike ("failed to get domain 'x'", the cause reset), and
   * says a dropped connection only from another thread, so not always in time: a daemon going
   * away reads as "no such domain" (found with a socket that drops the lookup). Absence is taken
   * only when libvirt, asked again, lists no domain of that name; a failing list is the error.
   */
  private async confirmNoDomain(args: string[], label: string): Promise<void> {
    const at = args.indexOf('--domain');
    const name = at >= 0 ? args[at + 1] : /--domain (\S+?)(?:;|\s|$)/.exec(args.join(' '))?.[1];
    if (name === undefined) return;
    if ((await this.list()).includes(name))
      throw new VirshError(
        'other',
        label,
        '',
        `virsh ${label}: libvirt lists domain ${name} but could not look it up`,
        `ask again; if it lasts: virsh --connect ${shellQuote(this.uri)} dominfo ${shellQuote(name)}`,
      );
  }

  /** Runs virsh; a failure of one of the `tolerate` kinds is returned, any other thrown. */
  private async attempt(args: string[], tolerate: VirshFailureKind[], label = args[0]!): Promise<{ stdout: string } | { failed: VirshFailureKind }> {
    const r = await runVirsh(['--connect', this.uri, ...args], this.env);
    if ('missing' in r) {
      throw new RumError('VIRSH_MISSING', 'virsh is not installed (not found on PATH)', `apt install libvirt-clients${seeDoctor('libvirt')}`, {
        cause: r.missing,
      });
    }
    if (r.status === 0) return { stdout: r.stdout };
    const { kind, hint, line } = classifyVirshFailure(r.stderr, this.uri, r.signal);
    if (tolerate.includes(kind)) {
      if (kind === 'no-domain') await this.confirmNoDomain(args, label);
      return { failed: kind };
    }
    // An unreachable daemon is named by the line that says so, not by virsh's last word (a
    // lookup that failed because of it).
    const why = (kind === 'no-daemon' ? line : undefined) ?? lastMeaningfulLine(r.stderr) ?? `exited with ${r.status ?? r.signal}`;
    throw new VirshError(kind, label, r.stderr, `virsh ${label}: ${why}`, hint);
  }
}

/**
 * One virsh process, its output collected. node:child_process rather than execa here: graph,
 * status and a no-op up run nothing else, and loading execa costs them ~20 ms of a 120 ms budget.
 */
function runVirsh(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } | { missing: Error }> {
  return new Promise((resolve) => {
    const child = spawn('virsh', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') resolve({ missing: e });
      else resolve({ status: null, signal: null, stdout: '', stderr: e.message });
    });
    child.once('close', (status, signal) =>
      resolve({
        status,
        signal,
        stdout: Buffer.concat(out).toString('utf8').replace(/\n$/, ''),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    );
  });
}

/** Rows of a virsh table: the lines after the dashed rule, split on runs of spaces. */
function tableRows(stdout: string): string[][] {
  const lines = stdout.split('\n');
  const rule = lines.findIndex((l) => /^-{5,}\s*$/.test(l.trim()));
  return lines
    .slice(rule + 1)
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
    .map((l) => l.split(/\s+/));
}

export function parseDomifaddr(stdout: string): { iface: string; mac: string; protocol: string; address: string; prefix?: number }[] {
  return tableRows(stdout).flatMap((cols) => {
    const [iface, mac, protocol, cidr] = cols;
    if (!iface || !mac || !protocol || !cidr) return [];
    const [address, prefix] = cidr.split('/');
    return [{ iface, mac, protocol, address: address!, ...(prefix ? { prefix: Number(prefix) } : {}) }];
  });
}

export function parseDhcpLeases(stdout: string): DhcpLease[] {
  return tableRows(stdout).flatMap((cols) => {
    const [date, time, mac, protocol, cidr, hostname] = cols;
    if (!date || !time || !mac || (protocol !== 'ipv4' && protocol !== 'ipv6') || !cidr) return [];
    const [address, prefix] = cidr.split('/');
    return [
      {
        expiry: `${date} ${time}`,
        mac: mac.toLowerCase(),
        protocol,
        address: address!,
        ...(prefix ? { prefix: Number(prefix) } : {}),
        ...(hostname && hostname !== '-' ? { hostname } : {}),
      },
    ];
  });
}

export function parseNetInfo(stdout: string): NetInfo {
  const field = (key: string) => new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(stdout)?.[1]?.trim();
  const yes = (key: string) => field(key) === 'yes';
  const uuid = field('UUID');
  const bridge = field('Bridge');
  return {
    name: field('Name') ?? '',
    ...(uuid ? { uuid } : {}),
    active: yes('Active'),
    persistent: yes('Persistent'),
    autostart: yes('Autostart'),
    ...(bridge ? { bridge } : {}),
  };
}

export function parseVersion(stdout: string): LibvirtVersion {
  const library = /^Using library: \S+ (\S+)/m.exec(stdout)?.[1] ?? /^Compiled against library: \S+ (\S+)/m.exec(stdout)?.[1];
  if (!library) throw new RumError('LIBVIRT', `virsh version: unexpected output: ${JSON.stringify(stdout.slice(0, 200))}`);
  const hv = /^Running hypervisor: (\S+) (\S+)/m.exec(stdout);
  const daemon = /^Running against daemon: (\S+)/m.exec(stdout)?.[1];
  return {
    library,
    ...(hv ? { hypervisor: { name: hv[1]!, version: hv[2]! } } : {}),
    ...(daemon ? { daemon } : {}),
  };
}
