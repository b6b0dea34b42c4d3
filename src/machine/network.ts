// Owns: a project's own libvirt network (nat mode with several machines): created, kept in step
// with the machines (a DHCP reservation and a DNS name each, added live) and removed by rum,
// and only when it carries rum's mark for this rum.yaml. Not: when (tasks/project-network.ts).
import type { Project } from '../config/schema.js';
import { RumError } from '../errors.js';
import type { Virsh } from '../libvirt/virsh.js';
import type { OpenProject } from './project.js';

export interface ProjectNetwork {
  name: string;
  domain: string;
  /** The machines on it: name (their DNS label) and MAC. */
  hosts: { name: string; mac: string }[];
  configFile: string;
}

/** What the network is once made: its subnet and each machine's fixed address. */
export type NetworkState = { network: string; subnet: string; hosts: { [machine: string]: string } };

/** The network's DNS domain: `.internal` is reserved for private use, never delegated. */
export const projectDomain = (p: Pick<Project, 'name'>): string => `${p.name}.rum.internal`;

/** The network's name: `rum-<project>`. */
export const projectNetworkName = (p: Pick<Project, 'name'>): string => `rum-${p.name}`;

/** Machines of a project of several get their own network in nat mode, unless they name one
 * (network.name other than the default): openProject names it for them. */
export function withProjectNetwork(p: Project): Project {
  if (p.single) return p;
  const name = projectNetworkName(p);
  return { ...p, machines: p.machines.map((c) => (c.network.mode === 'nat' && c.network.name === 'default' ? { ...c, network: { ...c.network, name } } : c)) };
}

export const onProjectNetwork = (p: Project, c: Project['machines'][number]): boolean =>
  !p.single && c.network.mode === 'nat' && c.network.name === projectNetworkName(p);

function notOurs(net: ProjectNetwork, owner: string | undefined): RumError {
  return new RumError(
    'LIBVIRT',
    `a libvirt network named "${net.name}" exists and is not this project's${owner ? ` (it belongs to ${owner})` : ' (it was not made by rum)'}`,
    'rum never changes a network it does not own: set a different project `name:` in rum.yaml, or network.name to use that network as it is',
  );
}

/** Makes the network, or brings an existing one of ours in step; starts it. */
export async function ensureProjectNetwork(v: Virsh, net: ProjectNetwork, notice: (m: string) => void): Promise<NetworkState> {
  const [x, a] = await Promise.all([import('../libvirt/network-xml.js'), import('../libvirt/network-addr.js')]);
  const xml = await v.netDumpXml(net.name, { inactive: true });
  const facts = xml === undefined ? undefined : x.parseNetworkXml(xml);
  if (xml !== undefined && facts?.owner !== net.configFile) throw notOurs(net, facts?.owner);
  const names = net.hosts.map((h) => h.name);
  if (!facts || facts.subnets.length === 0) {
    const taken = [...(await x.libvirtSubnets(v)), ...(await a.hostSubnets())];
    const subnet = a.pickSubnet(taken);
    if (!subnet) throw new RumError('LIBVIRT', 'no free private /24 is left for the project network', 'remove libvirt networks you no longer use (virsh net-list --all)');
    const ips = a.assignHostIps(names, subnet);
    const hosts = net.hosts.map((h) => ({ ...h, ip: ips.get(h.name)! }));
    notice(`creating libvirt network ${net.name} (${subnet.address}/${subnet.prefix}, domain ${net.domain})`);
    await v.netDefine({
      xml: x.projectNetworkXml({ name: net.name, bridge: x.bridgeNameFor(`${net.configFile}\0${net.name}`), domain: net.domain, subnet, dhcpRange: a.dhcpRangeFor(subnet), hosts, owner: { configFile: net.configFile } }),
    });
    await v.netStart(net.name);
    return stateOf(net.name, subnet, ips);
  }
  // Ours already: add or change reservations live, so running guests keep their network.
  const subnet = facts.subnets[0]!;
  const previous = new Map(facts.dhcpHosts.map((h) => [h.name, h.ip]));
  const ips = a.assignHostIps(names, subnet, previous);
  for (const h of net.hosts) {
    const ip = ips.get(h.name)!;
    const had = facts.dhcpHosts.find((d) => d.name === h.name);
    if (had && had.ip === ip && had.mac === h.mac) continue;
    notice(`network ${net.name}: ${h.name} is ${ip}`);
    if (had) await v.netUpdateDhcpHost(net.name, 'delete', had);
    await v.netUpdateDhcpHost(net.name, 'add', { ...h, ip });
    if (had) await v.netUpdateDnsHost(net.name, 'delete', { ip: had.ip, name: had.name });
    await v.netUpdateDnsHost(net.name, 'add', { ip, name: h.name });
  }
  if ((await v.netActive(net.name)) !== true) await v.netStart(net.name);
  return stateOf(net.name, subnet, ips);
}

const stateOf = (network: string, s: { address: string; prefix: number }, ips: Map<string, string>): NetworkState => ({
  network,
  subnet: `${s.address}/${s.prefix}`,
  hosts: Object.fromEntries([...ips].sort(([x], [y]) => (x < y ? -1 : 1))),
});

/** Whether the network is there and running (what every run checks). */
export async function projectNetworkUp(v: Virsh, name: string): Promise<boolean> {
  return (await v.netActive(name)) === true;
}

/** Removes the project's network when it is ours: after the last machine is destroyed. */
export async function removeProjectNetwork(o: OpenProject, say: (m: string) => void): Promise<void> {
  const m = o.machines.find((x) => onProjectNetwork(o.project, x.config));
  if (!m) return;
  const v = m.virsh;
  const name = projectNetworkName(o.project);
  const xml = await v.netDumpXml(name, { inactive: true });
  if (xml === undefined) return;
  const { readNetworkOwner } = await import('../libvirt/network-xml.js');
  if (readNetworkOwner(xml) !== o.project.file) return; // not ours: left alone, as every foreign thing
  await v.netDestroy(name);
  await v.netUndefine(name);
  say(`removed libvirt network ${name}`);
}
