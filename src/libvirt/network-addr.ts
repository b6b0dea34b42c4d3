// Owns: choosing addresses for a project network: a free IPv4 /24 for it, a stable address per
// machine in it, and which subnets this host's own interfaces and routes use. Not: the network
// XML or the subnets libvirt's networks use (network-xml.ts), nor talking to libvirt (virsh.ts).
// Knows nothing of the build graph or rum.yaml.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { RumError } from '../errors.js';

/** An IPv4 network as libvirt's `<ip>` names it: an address in it (for a network: the host's, the gateway) and a prefix length. */
export interface Ipv4Subnet {
  address: string;
  prefix: number;
}

export interface DhcpRange {
  start: string;
  end: string;
}

export function ipToInt(ip: string): number {
  if (!isIPv4(ip)) throw new Error(`bug: not an IPv4 address: ${JSON.stringify(ip)}`);
  return ip.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** The first and last address of the subnet (network and broadcast address), as integers. */
export function subnetBounds(s: Ipv4Subnet): { first: number; last: number } {
  const size = 2 ** (32 - s.prefix);
  const first = Math.floor(ipToInt(s.address) / size) * size;
  return { first, last: first + size - 1 };
}

export function overlaps(a: Ipv4Subnet, b: Ipv4Subnet): boolean {
  const x = subnetBounds(a);
  const y = subnetBounds(b);
  return x.first <= y.last && y.first <= x.last;
}

export function inSubnet(ip: string, s: Ipv4Subnet): boolean {
  const n = ipToInt(ip);
  const { first, last } = subnetBounds(s);
  return n >= first && n <= last;
}

/** A prefix length from a dotted netmask (255.255.255.0 -> 24), or undefined when it is not one. */
export function netmaskPrefix(mask: string): number | undefined {
  if (!isIPv4(mask)) return undefined;
  const bits = ipToInt(mask).toString(2).padStart(32, '0');
  if (!/^1*0*$/.test(bits)) return undefined;
  const zero = bits.indexOf('0');
  return zero < 0 ? 32 : zero;
}

// ---- choosing a subnet ------------------------------------------------------------------------

/**
 * Never chosen, even when nothing on this host uses them: 192.168.122.0/24 is libvirt's own
 * "default" network (defined whenever libvirt-daemon-config-network is installed, maybe later);
 * 192.168.100.1 is the management address of DOCSIS cable modems, reached through the default
 * route and so invisible as a local route.
 */
const RESERVED: readonly Ipv4Subnet[] = [
  { address: '192.168.122.0', prefix: 24 },
  { address: '192.168.100.0', prefix: 24 },
];

/** The /24s tried, in order: 192.168.100-254.0, then 10.100-254.0-255.0. */
function* candidates(): Generator<Ipv4Subnet> {
  for (let c = 100; c <= 254; c++) yield { address: `192.168.${c}.1`, prefix: 24 };
  for (let b = 100; b <= 254; b++) for (let c = 0; c <= 255; c++) yield { address: `10.${b}.${c}.1`, prefix: 24 };
}

/**
 * A free /24 for a new network, as its `<ip>` (the host takes .1), or undefined when every
 * candidate is taken. `taken`: every subnet libvirt's networks use (active or not: libvirt checks
 * only at start) and the host's addresses and routes. Default routes (prefix 0) do not count.
 * `prefer`: kept when it is still free (a network redefined keeps its addresses).
 */
export function pickSubnet(taken: readonly Ipv4Subnet[], opts: { prefer?: Ipv4Subnet } = {}): Ipv4Subnet | undefined {
  const busy = [...RESERVED, ...taken.filter((t) => t.prefix > 0)];
  const free = (s: Ipv4Subnet) => !busy.some((t) => overlaps(s, t));
  if (opts.prefer && free(opts.prefer)) return opts.prefer;
  for (const s of candidates()) if (free(s)) return s;
  return undefined;
}

// ---- addresses in a subnet --------------------------------------------------------------------

/**
 * How a network's addresses are split: the lower half (but the network address and the host's)
 * is for machines' fixed addresses, the upper half (but broadcast) for DHCP's dynamic range.
 * A /24 with the host at .1: fixed .2-.127, dynamic .128-.254.
 */
function layout(s: Ipv4Subnet): { first: number; last: number; gateway: number; pool: [number, number]; range: [number, number] } {
  if (!Number.isInteger(s.prefix) || s.prefix < 8 || s.prefix > 28) throw new Error(`bug: subnet prefix must be 8 to 28: /${s.prefix}`);
  const { first, last } = subnetBounds(s);
  const half = first + (last - first + 1) / 2;
  return { first, last, gateway: ipToInt(s.address), pool: [first + 1, half - 1], range: [half, last - 1] };
}

/** The dynamic DHCP range of a network with this subnet: its upper half, but broadcast. */
export function dhcpRangeFor(s: Ipv4Subnet): DhcpRange {
  const { range } = layout(s);
  return { start: intToIp(range[0]), end: intToIp(range[1]) };
}

/**
 * A fixed address for each machine: a name keeps its `previous` address when that is still a
 * host address of the subnet (not its network, broadcast or the host's own) and no other name
 * kept it first; a new name gets one from the lower half, chosen by a hash of the name and probed
 * upwards past taken ones. Names are handled in code-unit order, so the result does not depend on
 * the order they come in.
 */
export function assignHostIps(names: readonly string[], subnet: Ipv4Subnet, previous: ReadonlyMap<string, string> = new Map()): Map<string, string> {
  const sorted = [...names].sort(byCodeUnit);
  const dup = sorted.find((n, i) => sorted[i + 1] === n);
  if (dup !== undefined) throw new Error(`bug: machine name ${JSON.stringify(dup)} given twice`);
  const { first, last, gateway, pool } = layout(subnet);
  const used = new Set<number>([gateway]);
  const out = new Map<string, string>();

  for (const name of sorted) {
    const ip = previous.get(name);
    if (ip === undefined || !isIPv4(ip)) continue;
    const n = ipToInt(ip);
    if (n <= first || n >= last || used.has(n)) continue;
    used.add(n);
    out.set(name, ip);
  }

  const size = pool[1] - pool[0] + 1;
  for (const name of sorted) {
    if (out.has(name)) continue;
    let free: number | undefined;
    const start = createHash('sha256').update(`ip:${name}`).digest().readUInt32BE(0) % size;
    for (let i = 0; i < size && free === undefined; i++) {
      const n = pool[0] + ((start + i) % size);
      if (!used.has(n)) free = n;
    }
    if (free === undefined)
      throw new RumError(
        'CONFIG_INVALID',
        `${names.length} machines do not fit in network ${subnet.address}/${subnet.prefix}: it has ${size} fixed addresses`,
        'use fewer machines in one rum.yaml',
      );
    used.add(free);
    out.set(name, intToIp(free));
  }
  return out;
}

// ---- what is taken ----------------------------------------------------------------------------

/**
 * The IPv4 subnets this process's network namespace uses: each interface's address with its
 * prefix, and the main routing table (/proc/net/route) but its default route. Whatever cannot be
 * read is left out: libvirt refuses to start a network whose subnet a route covers anyway.
 */
export async function hostSubnets(): Promise<Ipv4Subnet[]> {
  const out: Ipv4Subnet[] = [];
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family !== 'IPv4' || a.internal || a.cidr === null) continue;
      const prefix = Number(a.cidr.split('/')[1]);
      if (Number.isInteger(prefix) && prefix > 0) out.push({ address: a.address, prefix });
    }
  }
  try {
    out.push(...parseProcNetRoute(await readFile('/proc/net/route', 'utf8')));
  } catch {
    // not Linux, or no /proc: the interfaces above are what there is
  }
  return out;
}

/** Routes of /proc/net/route (hex, host byte order: little-endian on every Linux rum runs on), but default routes. */
export function parseProcNetRoute(text: string): Ipv4Subnet[] {
  return text
    .split('\n')
    .slice(1)
    .flatMap((line) => {
      const cols = line.trim().split(/\s+/);
      const [dest, mask] = [cols[1], cols[7]];
      if (!dest || !mask || !/^[0-9A-Fa-f]{8}$/.test(dest) || !/^[0-9A-Fa-f]{8}$/.test(mask)) return [];
      const prefix = netmaskPrefix(leHexToIp(mask));
      if (prefix === undefined || prefix === 0) return [];
      return [{ address: leHexToIp(dest), prefix }];
    });
}

function leHexToIp(hex: string): string {
  const b = Buffer.from(hex, 'hex');
  return [b[3], b[2], b[1], b[0]].join('.');
}

// Code-unit order, not localeCompare: an assignment must not depend on the user's locale.
const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
