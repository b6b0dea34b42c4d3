// Owns: the libvirt network XML of a project network (NAT, a DNS domain, a fixed address and name
// per machine) and reading networks back: rum's ownership mark, subnets, hosts. Not: which values
// go in (the caller decides; addresses come from network-addr.ts), nor talking to libvirt
// (virsh.ts). Knows nothing of the build graph or rum.yaml.
import { createHash } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { isIPv4 } from 'node:net';
import { RumError } from '../errors.js';
import { ipToInt, netmaskPrefix, subnetBounds, type DhcpRange, type Ipv4Subnet } from './network-addr.js';
import type { Virsh } from './virsh.js';
import { el, refuseProblems, renderXml, textProblems, unescapeXml, type XmlElement } from './xml.js';

/**
 * The namespace of rum's mark in a network's `<metadata>`. libvirt keeps network metadata through
 * define, start, net-update and dumpxml (checked on 9.0.0: `<metadata>` has been in the network
 * schema long before the 9.7 metadata API). A new incompatible mark gets a new URI.
 */
export const RUM_NETWORK_XMLNS = 'https://rum.dev/xmlns/network/1';

/** One machine on the network: a DHCP reservation (MAC -> address) and a DNS name for it. */
export interface NetworkHost {
  mac: string;
  name: string; // a DNS label: the machine answers to `name` and `name.<domain>`
  ip: string;
}

export interface NetworkSpec {
  name: string;
  uuid?: string; // redefining a network needs the UUID libvirt already has for it
  bridge: string; // at most 15 characters (a Linux interface name); see bridgeNameFor
  domain: string; // answered by the network's dnsmasq only, never forwarded (see networkDomainFor)
  subnet: Ipv4Subnet; // address: the host's address on the bridge, the guests' gateway and DNS
  dhcpRange: DhcpRange;
  hosts: NetworkHost[];
  owner: { configFile: string };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
// A Linux interface name: at most 15 bytes; no '/', ':', whitespace; libvirt reads '%' as a template.
const BRIDGE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

function isDnsName(name: string): boolean {
  return name.length <= 253 && name.split('.').every((l) => LABEL.test(l));
}

/** A bridge name for a network: `rum-` and 11 hex digits of a hash of `seed` (15 characters). */
export function bridgeNameFor(seed: string): string {
  return `rum-${createHash('sha256').update(`bridge:${seed}`).digest('hex').slice(0, 11)}`;
}

/**
 * The DNS domain of a project's network: `<label>.rum.internal`. `.internal` is reserved by ICANN
 * for private use (2024) and will never be delegated, so a query that leaks resolves to nobody's
 * host; the network's dnsmasq is localOnly for the domain besides, so it never forwards one.
 * `label`: lower-cased, runs of anything but letters and digits made one '-', cut to 63.
 */
export function networkDomainFor(label: string): string {
  const l = label
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .slice(0, 63)
    .replace(/^-+|-+$/g, '');
  return `${l === '' ? 'project' : l}.rum.internal`;
}

/** Every problem with a spec, at once; [] when it can be written. */
export function networkSpecProblems(spec: NetworkSpec): string[] {
  const problems: string[] = [];
  const text = (what: string, v: string) => textProblems(problems, what, v);
  if (text('network name', spec.name)) {
    if (spec.name.includes('/')) problems.push(`network name may not contain '/': ${JSON.stringify(spec.name)}`);
    if (spec.name.startsWith('-') || UUID.test(spec.name)) problems.push(`network name may not start with '-' or look like a UUID: ${spec.name}`);
  }
  if (spec.uuid !== undefined && !UUID.test(spec.uuid)) problems.push(`uuid is not a UUID: ${JSON.stringify(spec.uuid)}`);
  if (!BRIDGE.test(spec.bridge)) problems.push(`bridge must be 1-15 letters, digits, _ . - (not starting with . or -): ${JSON.stringify(spec.bridge)}`);
  if (!isDnsName(spec.domain)) problems.push(`domain is not a DNS name: ${JSON.stringify(spec.domain)}`);
  if (text('owner.configFile', spec.owner.configFile) && !isAbsolute(spec.owner.configFile))
    problems.push(`owner.configFile must be an absolute path: ${JSON.stringify(spec.owner.configFile)}`);

  const { address, prefix } = spec.subnet;
  if (!isIPv4(address) || !Number.isInteger(prefix) || prefix < 8 || prefix > 28) {
    problems.push(`subnet must be an IPv4 address with a prefix of 8 to 28: ${JSON.stringify(spec.subnet)}`);
    return problems; // every check below is relative to the subnet
  }
  const { first, last } = subnetBounds(spec.subnet);
  const gateway = ipToInt(address);
  const hostAddress = (what: string, ip: string) => {
    if (!isIPv4(ip)) problems.push(`${what} is not an IPv4 address: ${JSON.stringify(ip)}`);
    else if (ipToInt(ip) <= first || ipToInt(ip) >= last) problems.push(`${what} ${ip} is not a host address of ${address}/${prefix}`);
    else if (ipToInt(ip) === gateway) problems.push(`${what} ${ip} is the network's own address`);
    else return true;
    return false;
  };
  if (gateway === first || gateway === last) problems.push(`subnet address ${address} is the network or broadcast address of /${prefix}`);
  const okStart = hostAddress('dhcpRange.start', spec.dhcpRange.start);
  const okEnd = hostAddress('dhcpRange.end', spec.dhcpRange.end);
  if (okStart && okEnd) {
    const [s, e] = [ipToInt(spec.dhcpRange.start), ipToInt(spec.dhcpRange.end)];
    if (s > e) problems.push(`dhcpRange starts after it ends: ${spec.dhcpRange.start}-${spec.dhcpRange.end}`);
    else if (gateway >= s && gateway <= e) problems.push(`dhcpRange ${spec.dhcpRange.start}-${spec.dhcpRange.end} holds the network's own address ${address}`);
  }

  const seen = { mac: new Map<string, number>(), name: new Map<string, number>(), ip: new Map<string, number>() };
  const once = (key: keyof typeof seen, value: string, i: number) => {
    const before = seen[key].get(value);
    if (before !== undefined) problems.push(`hosts[${i}].${key} ${value} is also hosts[${before}].${key}`);
    else seen[key].set(value, i);
  };
  spec.hosts.forEach((h, i) => {
    if (!MAC.test(h.mac)) problems.push(`hosts[${i}].mac is not a MAC address: ${JSON.stringify(h.mac)}`);
    // libvirt refuses a multicast MAC for a guest: the low bit of the first octet.
    else if (parseInt(h.mac.slice(0, 2), 16) & 1) problems.push(`hosts[${i}].mac ${h.mac} is a multicast address`);
    else once('mac', h.mac.toLowerCase(), i);
    if (!LABEL.test(h.name)) problems.push(`hosts[${i}].name must be a DNS label (1-63 letters, digits, '-', not at either end): ${JSON.stringify(h.name)}`);
    else once('name', h.name.toLowerCase(), i);
    if (hostAddress(`hosts[${i}].ip`, h.ip)) once('ip', h.ip, i);
  });
  return problems;
}

/**
 * The network XML for `spec`: NAT to the host's uplinks, dnsmasq serving DHCP and DNS for
 * `domain` (localOnly: never forwarded), and per host a DHCP reservation plus a DNS record.
 * Both, because dnsmasq puts a DHCP reservation's name into DNS only once that machine holds a
 * lease (measured on 9.0.0): the DNS record lets `web` resolve `db` before db has booted.
 * Every value goes through the element builder, which escapes it; a bad spec is refused first.
 */
export function projectNetworkXml(spec: NetworkSpec): string {
  refuseProblems('network XML', spec.name, networkSpecProblems(spec));
  const network = el(
    'network',
    {},
    el('name', {}, spec.name),
    spec.uuid !== undefined && el('uuid', {}, spec.uuid.toLowerCase()),
    el('metadata', {}, el('rum:network', { 'xmlns:rum': RUM_NETWORK_XMLNS }, el('rum:config', {}, spec.owner.configFile))),
    el('forward', { mode: 'nat' }),
    el('bridge', { name: spec.bridge, stp: 'on', delay: 0 }),
    el('domain', { name: spec.domain, localOnly: 'yes' }),
    spec.hosts.length > 0 && el('dns', {}, spec.hosts.map(dnsHostElement)),
    el(
      'ip',
      { address: spec.subnet.address, prefix: spec.subnet.prefix },
      el('dhcp', {}, el('range', { start: spec.dhcpRange.start, end: spec.dhcpRange.end }), spec.hosts.map(dhcpHostElement)),
    ),
  );
  return renderXml(network);
}

function dhcpHostElement(h: NetworkHost): XmlElement {
  return el('host', { mac: h.mac.toLowerCase(), name: h.name, ip: h.ip });
}

function dnsHostElement(h: { ip: string; name: string }): XmlElement {
  return el('host', { ip: h.ip }, el('hostname', {}, h.name));
}

/** The `<host>` fragment `virsh net-update ... ip-dhcp-host` takes. Only `mac` when deleting. */
export function dhcpHostXml(h: NetworkHost | { mac: string }): string {
  if (!MAC.test(h.mac)) throw new RumError('CONFIG_INVALID', `not a MAC address: ${JSON.stringify(h.mac)}`);
  return renderXml('name' in h ? dhcpHostElement(h) : el('host', { mac: h.mac.toLowerCase() }), '').replace(/\n/g, '');
}

/** The `<host>` fragment `virsh net-update ... dns-host` takes. Only `ip` when deleting. */
export function dnsHostXml(h: { ip: string; name: string } | { ip: string }): string {
  if (!isIPv4(h.ip)) throw new RumError('CONFIG_INVALID', `not an IPv4 address: ${JSON.stringify(h.ip)}`);
  if ('name' in h && !LABEL.test(h.name)) throw new RumError('CONFIG_INVALID', `not a DNS label: ${JSON.stringify(h.name)}`);
  return renderXml('name' in h ? dnsHostElement(h) : el('host', { ip: h.ip }), '').replace(/\n/g, '');
}

// ---- reading networks back --------------------------------------------------------------------

/** What rum needs to know of an existing network, as `virsh net-dumpxml` prints it. */
export interface NetworkFacts {
  name: string;
  uuid?: string;
  bridge?: string;
  forwardMode?: string; // undefined: an isolated network
  domain?: string;
  subnets: Ipv4Subnet[]; // every IPv4 <ip> (IPv6 ones are left out)
  routes: Ipv4Subnet[]; // static <route>s (IPv4): also taken
  dhcpRange?: DhcpRange; // the first range of the first IPv4 <ip>
  dhcpHosts: NetworkHost[]; // reservations with a MAC, a name and an address (others left out)
  dnsHosts: { ip: string; hostnames: string[] }[];
  owner?: string; // rum's mark: the rum.yaml the network belongs to
}

/** The network's facts, or undefined when `xml` is not a `<network>` document. */
export function parseNetworkXml(xml: string): NetworkFacts | undefined {
  const root = parseXml(xml);
  if (!root || root.name !== 'network') return undefined;
  const attr = (n: XNode | undefined, a: string) => n?.attrs.get(a);
  const subnet = (n: XNode): Ipv4Subnet | undefined => {
    const address = attr(n, 'address');
    if (address === undefined || !isIPv4(address) || (attr(n, 'family') ?? 'ipv4') !== 'ipv4') return undefined;
    const mask = attr(n, 'netmask');
    const prefix = mask !== undefined ? netmaskPrefix(mask) : Number(attr(n, 'prefix') ?? 'NaN');
    return prefix !== undefined && Number.isInteger(prefix) && prefix >= 0 && prefix <= 32 ? { address, prefix } : undefined;
  };
  const ipv4 = children(root, 'ip').filter((n) => subnet(n) !== undefined);
  const dhcp = ipv4.flatMap((n) => children(n, 'dhcp'));
  const range = children(dhcp[0], 'range')[0];
  const uuid = textOf(children(root, 'uuid')[0])?.trim();
  const bridge = attr(children(root, 'bridge')[0], 'name');
  const forwardMode = children(root, 'forward').length > 0 ? (attr(children(root, 'forward')[0], 'mode') ?? 'nat') : undefined;
  const domain = attr(children(root, 'domain')[0], 'name');
  const owner = readNetworkOwnerFrom(root);
  return {
    name: textOf(children(root, 'name')[0])?.trim() ?? '',
    ...(uuid ? { uuid } : {}),
    ...(bridge !== undefined ? { bridge } : {}),
    ...(forwardMode !== undefined ? { forwardMode } : {}),
    ...(domain !== undefined ? { domain } : {}),
    subnets: ipv4.map((n) => subnet(n)!),
    routes: children(root, 'route').flatMap((n) => subnet(n) ?? []),
    ...(range && attr(range, 'start') && attr(range, 'end') ? { dhcpRange: { start: attr(range, 'start')!, end: attr(range, 'end')! } } : {}),
    dhcpHosts: dhcp
      .flatMap((d) => children(d, 'host'))
      .flatMap((h) => {
        const [mac, name, ip] = [attr(h, 'mac'), attr(h, 'name'), attr(h, 'ip')];
        return mac && name && ip ? [{ mac: mac.toLowerCase(), name, ip }] : [];
      }),
    dnsHosts: children(children(root, 'dns')[0], 'host').flatMap((h) => {
      const ip = attr(h, 'ip');
      return ip ? [{ ip, hostnames: children(h, 'hostname').map((n) => textOf(n)?.trim() ?? '') }] : [];
    }),
    ...(owner !== undefined ? { owner } : {}),
  };
}

/**
 * The rum.yaml a network belongs to, from rum's mark, or undefined when it has none. libvirt
 * re-serialises metadata with libxml2 (double quotes, its own whitespace), and another writer may
 * pick another prefix or a default namespace: the mark is found by its namespace URI.
 */
export function readNetworkOwner(xml: string): string | undefined {
  const root = parseXml(xml);
  return root?.name === 'network' ? readNetworkOwnerFrom(root) : undefined;
}

function readNetworkOwnerFrom(root: XNode): string | undefined {
  for (const metadata of children(root, 'metadata')) {
    for (const mark of metadata.children) {
      if (mark.ns !== RUM_NETWORK_XMLNS || mark.local !== 'network') continue;
      const config = mark.children.find((c) => c.ns === RUM_NETWORK_XMLNS && c.local === 'config');
      const file = textOf(config);
      if (file !== undefined && file !== '') return file;
    }
  }
  return undefined;
}

/**
 * The subnets of every libvirt network, active or not: their `<ip>`s and `<route>`s. libvirt's
 * daemon may live in another network namespace than rum, so this list, not the host's routes,
 * is the one that counts (libvirt itself checks routes only when a network starts, and only in
 * its own namespace).
 */
export async function libvirtSubnets(virsh: Virsh): Promise<Ipv4Subnet[]> {
  const out: Ipv4Subnet[] = [];
  for (const name of await virsh.netList()) {
    const xml = await virsh.netDumpXml(name, { inactive: true });
    const facts = xml === undefined ? undefined : parseNetworkXml(xml); // undefined: gone meanwhile
    if (facts) out.push(...facts.subnets, ...facts.routes);
  }
  return out;
}

// ---- a small XML reader: elements, attributes, text; namespaces resolved --------------------

interface XNode {
  name: string; // as written, with its prefix
  local: string;
  ns: string | undefined;
  attrs: Map<string, string>;
  children: XNode[];
  text: string[]; // the element's own text, decoded
}

function children(n: XNode | undefined, name: string): XNode[] {
  return n ? n.children.filter((c) => c.name === name && c.ns === undefined) : [];
}

function textOf(n: XNode | undefined): string | undefined {
  return n?.text.join('');
}

const TOKEN =
  /<!--[\s\S]*?-->|<\?[\s\S]*?\?>|<!DOCTYPE[^>]*>|<!\[CDATA\[([\s\S]*?)\]\]>|<\/([^\s>]+)\s*>|<([^\s/>!?]+)((?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>|([^<]+)/y;
const ATTR = /([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;

/** The document's root element, or undefined when the text is not well-formed as far as this reader checks. */
function parseXml(xml: string): XNode | undefined {
  const stack: { node: XNode; scope: Map<string, string> }[] = [];
  let root: XNode | undefined;
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < xml.length) {
    const m = TOKEN.exec(xml);
    if (!m) return undefined;
    const [, cdata, endName, startName, attrText, selfClosing, text] = m;
    const top = stack.at(-1);
    if (cdata !== undefined) {
      top?.node.text.push(cdata);
    } else if (text !== undefined) {
      if (top) top.node.text.push(unescapeXml(text));
      else if (text.trim() !== '') return undefined;
    } else if (endName !== undefined) {
      if (!top || top.node.name !== endName) return undefined;
      stack.pop();
    } else if (startName !== undefined) {
      if (!top && root) return undefined; // a second root
      const attrs = new Map<string, string>();
      for (const a of attrText!.matchAll(ATTR)) attrs.set(a[1]!, unescapeXml(a[2] ?? a[3] ?? ''));
      const scope = new Map(top?.scope);
      for (const [k, v] of attrs) {
        if (k === 'xmlns') scope.set('', v);
        else if (k.startsWith('xmlns:')) scope.set(k.slice(6), v);
      }
      const colon = startName.indexOf(':');
      const prefix = colon < 0 ? '' : startName.slice(0, colon);
      const node: XNode = { name: startName, local: startName.slice(colon + 1), ns: scope.get(prefix) || undefined, attrs, children: [], text: [] };
      if (top) top.node.children.push(node);
      else root = node;
      if (!selfClosing) stack.push({ node, scope });
    } // else a comment, a processing instruction or a doctype: nothing to keep
  }
  return stack.length === 0 ? root : undefined;
}
