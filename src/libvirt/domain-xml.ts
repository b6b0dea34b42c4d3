// Owns: the libvirt domain XML for one VM, and reading rum's ownership mark back out of it.
// Not: which values go in (tasks/domain-xml.ts decides from rum.yaml), nor talking to libvirt
// (virsh.ts). Knows nothing of the build graph or rum.yaml.
import { isIPv4 } from 'node:net';
import { isAbsolute } from 'node:path';
import { assertNever, RumError } from '../errors.js';
import { el, refuseProblems, renderXml, textProblems, unescapeXml, type XmlElement } from './xml.js';

/** The namespace of rum's mark in `<metadata>`; a new incompatible mark gets a new URI. */
export const RUM_XMLNS = 'https://rum.dev/xmlns/vm/1';
/** libvirt's namespace for passing raw arguments to QEMU (`<qemu:commandline>`). */
export const QEMU_XMLNS = 'http://libvirt.org/schemas/domain/qemu/1.0';

export interface PortForward {
  proto: 'tcp' | 'udp';
  bind: string; // host IPv4 address to listen on
  host: number;
  guest: number;
}

export type DomainNetwork =
  /** A libvirt network (NAT through a bridge); the MAC makes the DHCP lease findable. */
  | { mode: 'nat'; network: string; mac: string }
  /** QEMU user-mode networking (SLIRP): guest port 22 reachable at 127.0.0.1:sshPort (none: a
   * guest nobody logs into, such as a layer's builder). */
  | { mode: 'user'; sshPort?: number; forwards: PortForward[]; mac?: string };

export interface DomainMount {
  type: 'virtiofs' | '9p';
  source: string; // absolute host directory
  tag: string; // the guest mounts it by this tag
  readonly: boolean;
  /** 9p only (virtiofs is always passthrough). Default: passthrough. */
  accessmode?: 'passthrough' | 'mapped' | 'squash';
}

/**
 * The guest CPU. Default: host-passthrough under KVM; under TCG `maximum` (QEMU's `-cpu max`:
 * every feature the emulator implements, so guests built for x86-64-v2/v3 still boot, where the
 * historical default qemu64 is x86-64-v1 only).
 */
export type DomainCpu = { mode: 'host-passthrough' } | { mode: 'maximum' } | { mode: 'custom'; model: string };

/** Which project and VM directory a libvirt domain belongs to. */
export interface OwnerMark {
  configFile: string;
  vmDir: string;
}

export interface BackingFile {
  path: string;
  format: 'qcow2' | 'raw';
}

export interface DomainSpec {
  name: string;
  uuid?: string;
  title?: string;
  memoryBytes: number;
  cpus: number;
  domainType: 'kvm' | 'qemu';
  machine: string; // q35, or a versioned pc-q35-*
  cpu?: DomainCpu;
  overlayPath: string;
  overlayFormat: 'qcow2';
  seedIsoPath: string;
  consoleLogPath: string;
  network: DomainNetwork;
  mounts: DomainMount[];
  owner: OwnerMark;
  /** qemu:///system: run QEMU with this uid/gid (a static DAC label). Session needs none. */
  runAs?: { uid: number; gid: number };
  /**
   * The disk files keep their owner: libvirt does not hand them to its QEMU user (and would
   * never hand the read-only ones back); that user reaches them by an ACL instead. The whole
   * backing chain is named here (snapshot layers, then the base image), so libvirt labels no
   * image of it.
   */
  keepOwners?: { chain: BackingFile[] };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const MACHINE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const CPU_MODEL = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
// A mount tag: what `mount -t virtiofs TAG` names. virtiofs allows at most 36 bytes.
const TAG = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,35}$/;
const NETDEV_ID = 'rumnet0';

/** Every problem with a spec, at once; [] when it can be written. */
export function domainSpecProblems(spec: DomainSpec): string[] {
  const problems: string[] = [];
  const text = (what: string, v: string) => textProblems(problems, what, v);
  const path = (what: string, v: string) => {
    if (text(what, v) && !isAbsolute(v)) problems.push(`${what} must be an absolute path: ${JSON.stringify(v)}`);
  };
  const int = (what: string, v: number, min: number, max: number) => {
    if (!Number.isSafeInteger(v) || v < min || v > max) problems.push(`${what} must be an integer from ${min} to ${max}, not ${v}`);
  };
  const port = (what: string, v: number) => int(what, v, 1, 65535);

  if (text('domain name', spec.name)) {
    // virsh looks a bare number up as a domain id and a UUID as a uuid, before trying names.
    if (spec.name.includes('/')) problems.push(`domain name may not contain '/': ${JSON.stringify(spec.name)}`);
    if (/^\d+$/.test(spec.name) || UUID.test(spec.name)) problems.push(`domain name may not look like an id or UUID: ${spec.name}`);
    if (spec.name.startsWith('-')) problems.push(`domain name may not start with '-': ${spec.name}`);
  }
  if (spec.uuid !== undefined && !UUID.test(spec.uuid)) problems.push(`uuid is not a UUID: ${JSON.stringify(spec.uuid)}`);
  if (spec.title !== undefined) text('title', spec.title);
  int('memoryBytes', spec.memoryBytes, 2 ** 20, Number.MAX_SAFE_INTEGER);
  int('cpus', spec.cpus, 1, 4096);
  if (spec.domainType !== 'kvm' && spec.domainType !== 'qemu') problems.push(`domainType must be kvm or qemu, not ${String(spec.domainType)}`);
  if (spec.runAs && ![spec.runAs.uid, spec.runAs.gid].every((n) => Number.isInteger(n) && n >= 0 && n < 2 ** 32))
    problems.push(`runAs is not a uid:gid pair: ${JSON.stringify(spec.runAs)}`);
  if (!MACHINE.test(spec.machine)) problems.push(`machine is not a QEMU machine type: ${JSON.stringify(spec.machine)}`);
  if (spec.cpu?.mode === 'custom' && !CPU_MODEL.test(spec.cpu.model)) problems.push(`cpu model is not a CPU model name: ${JSON.stringify(spec.cpu.model)}`);
  if (spec.cpu?.mode === 'host-passthrough' && spec.domainType !== 'kvm') problems.push('cpu mode host-passthrough needs domainType kvm');
  path('overlayPath', spec.overlayPath);
  if (spec.overlayFormat !== 'qcow2') problems.push(`overlayFormat must be qcow2, not ${String(spec.overlayFormat)}`);
  path('seedIsoPath', spec.seedIsoPath);
  if (spec.keepOwners) {
    if (spec.keepOwners.chain.length === 0) problems.push('keepOwners.chain names no backing file');
    spec.keepOwners.chain.forEach((b, i) => {
      path(`keepOwners.chain[${i}].path`, b.path);
      if (!['qcow2', 'raw'].includes(b.format)) problems.push(`backing format must be qcow2 or raw, not ${String(b.format)}`);
    });
  }
  path('consoleLogPath', spec.consoleLogPath);
  path('owner.configFile', spec.owner.configFile);
  path('owner.vmDir', spec.owner.vmDir);

  const net = spec.network;
  if (net.mode === 'nat') {
    text('network name', net.network);
    if (!MAC.test(net.mac)) problems.push(`network mac is not a MAC address: ${JSON.stringify(net.mac)}`);
  } else if (net.mode === 'user') {
    if (net.mac !== undefined && !MAC.test(net.mac)) problems.push(`network mac is not a MAC address: ${JSON.stringify(net.mac)}`);
    if (net.sshPort !== undefined) port('sshPort', net.sshPort);
    // These go into one comma-separated QEMU option: only validated numbers and addresses may.
    const taken = net.sshPort === undefined ? [] : [{ proto: 'tcp', bind: '127.0.0.1', host: net.sshPort, what: 'the SSH port' }];
    net.forwards.forEach((f, i) => {
      const what = `forwards[${i}]`;
      if (f.proto !== 'tcp' && f.proto !== 'udp') problems.push(`${what}.proto must be tcp or udp, not ${String(f.proto)}`);
      if (!isIPv4(f.bind)) problems.push(`${what}.bind must be an IPv4 address: ${JSON.stringify(f.bind)}`);
      port(`${what}.host`, f.host);
      port(`${what}.guest`, f.guest);
      const clash = taken.find(
        (t) => t.proto === f.proto && t.host === f.host && (t.bind === f.bind || t.bind === '0.0.0.0' || f.bind === '0.0.0.0'),
      );
      if (clash) problems.push(`${what} listens on ${f.proto} ${f.bind}:${f.host}, already used by ${clash.what}`);
      taken.push({ proto: f.proto, bind: f.bind, host: f.host, what });
    });
  } else {
    problems.push(`network mode must be nat or user, not ${String((net as { mode: unknown }).mode)}`);
  }

  const tags = new Set<string>();
  spec.mounts.forEach((m, i) => {
    const what = `mounts[${i}]`;
    path(`${what}.source`, m.source);
    if (!TAG.test(m.tag)) problems.push(`${what}.tag must be 1-36 letters, digits, _ . - (not starting with _ . -): ${JSON.stringify(m.tag)}`);
    if (tags.has(m.tag)) problems.push(`${what}.tag ${m.tag} is used twice`);
    tags.add(m.tag);
    if (m.type !== 'virtiofs' && m.type !== '9p') problems.push(`${what}.type must be virtiofs or 9p, not ${String(m.type)}`);
    if (m.type === 'virtiofs' && m.accessmode !== undefined && m.accessmode !== 'passthrough')
      problems.push(`${what}: virtiofs supports only accessmode passthrough, not ${m.accessmode}`);
    if (m.accessmode !== undefined && !['passthrough', 'mapped', 'squash'].includes(m.accessmode))
      problems.push(`${what}.accessmode must be passthrough, mapped or squash, not ${String(m.accessmode)}`);
  });
  return problems;
}

/**
 * The domain XML for `spec`. Every value goes through the element builder, which escapes it;
 * a spec with a control character, a relative path or an impossible value is refused first.
 *
 * Notes on what is (not) there:
 * - no <graphics>: libvirt adds a default <video> only when there is a <graphics> (checked against
 *   libvirt 9.0); <video><model type='none'/> says "no display" explicitly anyway.
 * - the seed is a virtio-scsi cdrom: cloud kernels have no AHCI, so a SATA cdrom is invisible.
 * - no USB controller: nothing uses it, and under TCG every emulated device costs.
 * - readonly virtiofs: libvirt before 11.0 refuses `<readonly/>` on a virtiofs filesystem
 *   ("virtiofs does not yet support read-only shares"); the caller decides (9p, or ro in the guest).
 */
/** <backingStore> for each file of the chain, innermost last; an empty one ends it. */
function backingStore(chain: BackingFile[], keep: () => XmlElement | false | undefined): XmlElement {
  const [first, ...rest] = chain;
  if (!first) return el('backingStore');
  return el('backingStore', { type: 'file' }, el('format', { type: first.format }), el('source', { file: first.path }, keep()), backingStore(rest, keep));
}

export function domainXml(spec: DomainSpec): string {
  const keep = () => spec.keepOwners && el('seclabel', { model: 'dac', relabel: 'no' });
  refuseProblems('domain XML', spec.name, domainSpecProblems(spec));
  const net = spec.network;
  const virtiofs = spec.mounts.some((m) => m.type === 'virtiofs');
  const kib = Math.ceil(spec.memoryBytes / 1024);

  const domain = el(
    'domain',
    { type: spec.domainType, 'xmlns:qemu': net.mode === 'user' ? QEMU_XMLNS : undefined },
    el('name', {}, spec.name),
    spec.uuid !== undefined && el('uuid', {}, spec.uuid.toLowerCase()),
    spec.title !== undefined && el('title', {}, spec.title),
    el('metadata', {}, ownerMarkElement(spec.owner)),
    el('memory', { unit: 'KiB' }, kib),
    el('currentMemory', { unit: 'KiB' }, kib),
    // virtiofsd maps guest RAM: it must be shareable. memfd needs no hugepages or file path.
    virtiofs && el('memoryBacking', {}, el('source', { type: 'memfd' }), el('access', { mode: 'shared' })),
    el('vcpu', { placement: 'static' }, spec.cpus),
    el('os', {}, el('type', { arch: 'x86_64', machine: spec.machine }, 'hvm'), el('boot', { dev: 'hd' })),
    el('features', {}, el('acpi'), el('apic'), el('vmport', { state: 'off' })),
    cpuElement(spec.cpu ?? (spec.domainType === 'kvm' ? { mode: 'host-passthrough' } : { mode: 'maximum' })),
    el(
      'clock',
      { offset: 'utc' },
      el('timer', { name: 'rtc', tickpolicy: 'catchup' }),
      el('timer', { name: 'pit', tickpolicy: 'delay' }),
      el('timer', { name: 'hpet', present: 'no' }),
    ),
    // destroy on poweroff: `virsh shutdown` then ends in "shut off", which the engine reads as done.
    el('on_poweroff', {}, 'destroy'),
    el('on_reboot', {}, 'restart'),
    el('on_crash', {}, 'destroy'),
    el('pm', {}, el('suspend-to-mem', { enabled: 'no' }), el('suspend-to-disk', { enabled: 'no' })),
    el(
      'devices',
      {},
      el(
        'disk',
        { type: 'file', device: 'disk' },
        el('driver', { name: 'qemu', type: spec.overlayFormat, discard: 'unmap' }),
        el('source', { file: spec.overlayPath }, keep()),
        spec.keepOwners && backingStore(spec.keepOwners.chain, keep),
        el('target', { dev: 'vda', bus: 'virtio' }),
      ),
      el('controller', { type: 'scsi', index: 0, model: 'virtio-scsi' }),
      el(
        'disk',
        { type: 'file', device: 'cdrom' },
        el('driver', { name: 'qemu', type: 'raw' }),
        el('source', { file: spec.seedIsoPath }, keep()),
        el('target', { dev: 'sda', bus: 'scsi' }),
        el('readonly'),
      ),
      el('controller', { type: 'usb', model: 'none' }),
      net.mode === 'nat' &&
        el(
          'interface',
          { type: 'network' },
          el('mac', { address: net.mac.toLowerCase() }),
          el('source', { network: net.network }),
          el('model', { type: 'virtio' }),
        ),
      spec.mounts.map(filesystemElement),
      el('serial', { type: 'pty' }, el('log', { file: spec.consoleLogPath, append: 'on' }), el('target', { port: 0 })),
      el('console', { type: 'pty' }, el('target', { type: 'serial', port: 0 })),
      el('rng', { model: 'virtio' }, el('backend', { model: 'random' }, '/dev/urandom')),
      el('memballoon', { model: 'virtio' }),
      el('video', {}, el('model', { type: 'none' })),
    ),
    // QEMU as this user, not libvirt-qemu: it can then open files in a private home, and files
    // a guest writes through 9p belong to the user. libvirt relabels nothing (they are ours).
    spec.runAs &&
      el('seclabel', { type: 'static', model: 'dac', relabel: 'no' }, el('label', {}, `+${spec.runAs.uid}:+${spec.runAs.gid}`)),
    net.mode === 'user' && slirpCommandline(net),
  );
  return renderXml(domain);
}

function cpuElement(cpu: DomainCpu): XmlElement {
  switch (cpu.mode) {
    case 'host-passthrough':
      return el('cpu', { mode: 'host-passthrough' });
    case 'maximum':
      return el('cpu', { mode: 'maximum' });
    case 'custom':
      return el('cpu', { mode: 'custom', match: 'exact' }, el('model', { fallback: 'forbid' }, cpu.model));
    default:
      return assertNever(cpu);
  }
}

function filesystemElement(m: DomainMount): XmlElement {
  return el(
    'filesystem',
    { type: 'mount', accessmode: m.type === 'virtiofs' ? 'passthrough' : (m.accessmode ?? 'passthrough') },
    el('driver', { type: m.type === 'virtiofs' ? 'virtiofs' : 'path' }),
    el('source', { dir: m.source }),
    el('target', { dir: m.tag }),
    m.readonly && el('readonly'),
  );
}

/** SLIRP through raw QEMU arguments: Debian 12's libvirt has no passt backend (see the recipe). */
function slirpCommandline(net: Extract<DomainNetwork, { mode: 'user' }>): XmlElement {
  const hostfwd = [
    ...(net.sshPort === undefined ? [] : [`hostfwd=tcp:127.0.0.1:${net.sshPort}-:22`]),
    ...net.forwards.map((f) => `hostfwd=${f.proto}:${f.bind}:${f.host}-:${f.guest}`),
  ];
  const netdev = [`user`, `id=${NETDEV_ID}`, ...hostfwd].join(',');
  // An explicit slot on the root bus: left to QEMU, the NIC takes slot 1, which libvirt has
  // already given to its first pcie-root-port, and the domain fails to start.
  const device = [`virtio-net-pci`, `netdev=${NETDEV_ID}`, 'bus=pcie.0', 'addr=0x10', ...(net.mac ? [`mac=${net.mac.toLowerCase()}`] : [])].join(',');
  return el(
    'qemu:commandline',
    {},
    ['-netdev', netdev, '-device', device].map((value) => el('qemu:arg', { value })),
  );
}

function ownerMarkElement(owner: OwnerMark): XmlElement {
  return el('rum:vm', { 'xmlns:rum': RUM_XMLNS }, el('rum:config', {}, owner.configFile), el('rum:dir', {}, owner.vmDir));
}

// ---- reading the mark back --------------------------------------------------------------------

const START_TAG = /<([A-Za-z_][\w.-]*(?::[A-Za-z_][\w.-]*)?)((?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/g;
const ATTR = /([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;
const CONTENT = '((?:[^<]|<!\\[CDATA\\[[\\s\\S]*?\\]\\]>)*)';

/**
 * The owner mark in a domain XML as `virsh dumpxml` prints it, or undefined when there is none.
 * libvirt re-serialises metadata with libxml2 (double quotes, its own whitespace), and another
 * writer may pick another prefix or a default namespace: the mark is found by its namespace URI.
 */
export function readOwnerMark(xml: string): OwnerMark | undefined {
  const metadata = /<metadata(?:\s[^>]*)?>([\s\S]*?)<\/metadata\s*>/.exec(xml)?.[1];
  if (metadata === undefined) return undefined;
  for (const tag of metadata.matchAll(START_TAG)) {
    const [whole, name, attrText, selfClosing] = tag;
    if (selfClosing) continue;
    const prefix = name!.includes(':') ? name!.slice(0, name!.indexOf(':')) : undefined;
    if (name !== (prefix ? `${prefix}:vm` : 'vm')) continue;
    const nsAttr = prefix ? `xmlns:${prefix}` : 'xmlns';
    const declared = [...attrText!.matchAll(ATTR)].find((a) => a[1] === nsAttr);
    if (!declared || unescapeXml(declared[2] ?? declared[3] ?? '') !== RUM_XMLNS) continue;
    const start = tag.index! + whole!.length;
    const end = metadata.indexOf(`</${name}`, start);
    if (end < 0) continue;
    const body = metadata.slice(start, end);
    const child = (local: string) => {
      const q = (prefix ? `${prefix}:${local}` : local).replace(/\./g, '\\.');
      const m = new RegExp(`<${q}\\s*(?:/>|>${CONTENT}</${q}\\s*>)`).exec(body);
      return m ? decodeContent(m[1] ?? '') : undefined;
    };
    const configFile = child('config');
    const vmDir = child('dir');
    if (configFile !== undefined && vmDir !== undefined) return { configFile, vmDir };
  }
  return undefined;
}

function decodeContent(raw: string): string {
  return raw
    .split(/(<!\[CDATA\[[\s\S]*?\]\]>)/)
    .map((part) => (part.startsWith('<![CDATA[') ? part.slice(9, -3) : unescapeXml(part)))
    .join('');
}
