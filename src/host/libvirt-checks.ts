// Owns: the doctor's libvirt checks: the daemon answering on the URI (libvirt), the socket's group
// (group), and the NAT network with what may cut it off (network). Each parsing or deciding step is
// a pure function; the checks only gather facts for them.
import { existsSync } from 'node:fs';
import { shellQuote } from '../ssh/openssh.js';
import { stat } from 'node:fs/promises';
import { currentUser } from './qemu-reach.js';
import { classifyVirshFailure, lastMeaningfulLine, parseNetInfo, parseVersion, type NetInfo } from '../libvirt/virsh.js';
import { isLocalUri, isSessionUri } from '../libvirt/uri.js';
import { combine, type DoctorTarget, type Finding } from './check.js';
import { parseGroupFile, readTextMaybe, runTool, type GroupEntry, type ToolRun } from './probe.js';

const INSTALL_LIBVIRT =
  '`sudo apt install libvirt-clients libvirt-daemon-system` (Debian/Ubuntu) or `sudo dnf install libvirt-client libvirt-daemon-kvm` (Fedora)';
const RELOGIN = 'then log out and in again';

// ---- libvirt ----

export async function checkLibvirt(t: DoctorTarget, signal: AbortSignal): Promise<Finding> {
  const r = await runTool('virsh', ['--connect', t.uri, 'version'], { env: t.env, signal });
  const f = libvirtVerdict(r, t.uri, { systemd: existsSync('/run/systemd/system') });
  return { ...f, summary: `${f.summary}; ${t.uriFrom}` };
}

/** What `virsh version` on `uri` says about the daemon. */
export function libvirtVerdict(r: ToolRun, uri: string, host: { systemd: boolean }): Finding {
  if (r.missing) return { status: 'fail', summary: 'virsh is not installed, so rum cannot talk to libvirt', fix: INSTALL_LIBVIRT };
  if (r.status === 0) {
    try {
      const v = parseVersion(r.stdout);
      const hv = v.hypervisor ? `, ${v.hypervisor.name} ${v.hypervisor.version}` : '';
      return { status: 'ok', summary: `${uri} answers (libvirt ${v.daemon ?? v.library}${hv})` };
    } catch {
      return { status: 'ok', summary: `${uri} answers` };
    }
  }
  return { status: 'fail', ...libvirtFailure(r.stderr, uri, host) };
}

/** A failed connection in words, and the command that mends it. */
export function libvirtFailure(stderr: string, uri: string, host: { systemd: boolean }): { summary: string; fix?: string } {
  const { kind } = classifyVirshFailure(stderr, uri);
  const why = lastMeaningfulLine(stderr) ?? 'virsh failed without a message';
  const socket = /Failed to connect socket to '([^']+)'/.exec(stderr)?.[1];
  if (kind === 'no-daemon' && /Cannot find '(libvirtd|virtqemud)'/.test(stderr))
    return { summary: `the libvirt daemon is not installed (${why})`, fix: INSTALL_LIBVIRT };
  if (kind === 'no-daemon' && isSessionUri(uri))
    return { summary: `virsh could not start the session daemon for ${uri} (${why})`, fix: INSTALL_LIBVIRT };
  if (kind === 'no-daemon') {
    const modular = socket !== undefined && /virtqemud/.test(socket);
    const fix = !host.systemd
      ? `start it: \`sudo virtlogd -d && sudo ${modular ? 'virtqemud' : 'libvirtd'} -d\` (no systemd here)`
      : modular
        ? '`sudo systemctl enable --now virtqemud.socket`'
        : '`sudo systemctl enable --now libvirtd` (or `virtqemud.socket` where libvirt runs modular daemons)';
    return { summary: socket ? `no libvirt daemon is listening on ${socket}: it is not running` : `no libvirt daemon answers for ${uri} (${why})`, fix };
  }
  if (kind === 'permission')
    return !isSessionUri(uri)
      ? {
          summary: socket ? `this user may not use ${socket} (permission denied)` : `this user may not use ${uri} (${why})`,
          fix: `\`sudo usermod -aG libvirt $USER\`, ${RELOGIN} (see the group check), or use libvirt.uri: qemu:///session`,
        }
      : { summary: `this user may not use the libvirt socket (${why})` };
  return { summary: `virsh cannot connect to ${uri}: ${why}` };
}

// ---- group ----

export interface SocketFacts {
  path: string;
  gid: number;
  mode: number;
}

export interface GroupFacts {
  user: string;
  uid: number;
  primaryGid: number;
  /** The groups this process has now: getgid() and getgroups(). */
  sessionGids: number[];
  groups: GroupEntry[];
  /** The daemon's read-write socket; undefined when there is none (no daemon running). */
  socket?: SocketFacts;
}

/** The sockets qemu:///system reaches, in the order libvirt's client tries them. */
export function systemSockets(uri: string): string[] {
  const explicit = /[?&]socket=([^&]+)/.exec(uri)?.[1];
  return explicit ? [explicit] : ['/run/libvirt/virtqemud-sock', '/run/libvirt/libvirt-sock'];
}

export async function checkGroup(t: DoctorTarget): Promise<Finding> {
  if (isSessionUri(t.uri)) return { status: 'ok', summary: `not needed for ${t.uri}` };
  if (!isLocalUri(t.uri)) return { status: 'ok', summary: `not checked: ${t.uri} is on another host` };
  let socket: SocketFacts | undefined;
  for (const path of systemSockets(t.uri)) {
    const s = await stat(path).catch(() => undefined);
    if (s) {
      socket = { path, gid: s.gid, mode: s.mode & 0o777 };
      break;
    }
  }
  const me = currentUser();
  return groupVerdict({
    user: me.username,
    uid: me.uid,
    primaryGid: me.gid,
    sessionGids: [process.getgid?.() ?? me.gid, ...(process.getgroups?.() ?? [])],
    groups: parseGroupFile((await readTextMaybe('/etc/group')) ?? ''),
    ...(socket ? { socket } : {}),
  });
}

/** May this user use the system socket, now and at the next login? */
export function groupVerdict(f: GroupFacts): Finding {
  if (f.uid === 0) return { status: 'ok', summary: 'running as root, which may use the libvirt socket' };
  const mode = f.socket ? `, mode ${f.socket.mode.toString(8).padStart(4, '0')}` : '';
  // World read-write (Fedora): polkit decides, and libvirt's polkit rule admits the libvirt group.
  const viaPolkit = f.socket !== undefined && (f.socket.mode & 0o006) === 0o006;
  const entry = f.socket && !viaPolkit ? f.groups.find((g) => g.gid === f.socket!.gid) : f.groups.find((g) => g.name === 'libvirt');
  const gid = f.socket && !viaPolkit ? f.socket.gid : entry?.gid;
  if (gid === undefined)
    return { status: 'warn', summary: 'no libvirt socket and no libvirt group here: libvirt seems not to be installed (see the libvirt check)', fix: INSTALL_LIBVIRT };
  const name = entry?.name ?? `gid ${gid}`;
  const arg = entry?.name ?? String(gid); // usermod and newgrp take a name or a number
  const role = !f.socket
    ? "is libvirt's usual group (no socket to look at: the daemon is not running)"
    : viaPolkit
      ? `is the one libvirt's polkit rule admits (${f.socket.path} is open to everyone${mode}, so polkit decides)`
      : `owns ${f.socket.path}${mode}`;
  if (f.sessionGids.includes(gid)) return { status: 'ok', summary: `${f.user} is in group ${name}, in this session too; ${name} ${role}` };
  if (gid === 0)
    return { status: 'fail', summary: `only root may use ${f.socket?.path ?? 'the socket'}${mode}`, fix: 'use libvirt.uri: qemu:///session, or set unix_sock_group = "libvirt" in /etc/libvirt/libvirtd.conf' };
  const member = f.primaryGid === gid || (entry?.members.includes(f.user) ?? false);
  if (member)
    return {
      status: 'warn',
      summary: `${f.user} is in group ${name} in /etc/group but not in this session, which started before; ${name} ${role}`,
      fix: `log out and in again, or \`newgrp ${arg}\``,
    };
  return {
    status: viaPolkit ? 'warn' : 'fail',
    summary: `${f.user} is not in group ${name}; ${name} ${role}`,
    fix: `\`sudo usermod -aG ${arg} $USER\`, ${RELOGIN}`,
  };
}

// ---- network ----

export async function checkNetwork(t: DoctorTarget, signal: AbortSignal): Promise<Finding> {
  if (isSessionUri(t.uri)) return { status: 'ok', summary: `not needed: ${t.uri} uses QEMU user networking` };
  if (t.network.mode === 'user') return { status: 'ok', summary: 'not needed: rum.yaml sets network.mode: user' };
  const [info, forward] = await Promise.all([
    runTool('virsh', ['--connect', t.uri, 'net-info', '--network', t.network.name], { env: t.env, signal }),
    isLocalUri(t.uri) ? runTool('iptables', ['-S', 'FORWARD'], { env: t.env, signal }) : undefined,
  ]);
  const net = netVerdict(info, t.network.name, t.uri);
  if (!forward) return net.finding;
  const docker = existsSync('/run/docker.sock') || existsSync('/sys/class/net/docker0');
  const fw = forwardVerdict(forward, net.bridge ?? 'virbr0', docker);
  return fw ? combine([net.finding, fw]) : net.finding;
}

/** `virsh net-info NAME`, as a verdict on the network; its bridge when known. */
export function netVerdict(r: ToolRun, name: string, uri: string): { finding: Finding; bridge?: string } {
  const virsh = `virsh --connect ${shellQuote(uri)}`;
  if (r.missing) return { finding: { status: 'warn', summary: `could not look at network ${name}: virsh is not installed (see the libvirt check)` } };
  if (r.status !== 0) {
    const { kind } = classifyVirshFailure(r.stderr, uri);
    if (kind === 'no-network') {
      const fix =
        name === 'default'
          ? `\`${virsh} net-define /usr/share/libvirt/networks/default.xml && ${virsh} net-autostart default && ${virsh} net-start default\``
          : `define it with \`${virsh} net-define FILE.xml\`, or set network.name / network.mode: user in rum.yaml`;
      return { finding: { status: 'fail', summary: `libvirt has no network "${name}"`, fix } };
    }
    return { finding: { status: 'warn', summary: `could not look at network ${name}: ${lastMeaningfulLine(r.stderr) ?? 'virsh failed'} (see the libvirt check)` } };
  }
  const info: NetInfo = parseNetInfo(r.stdout);
  const bridge = info.bridge ? { bridge: info.bridge } : {};
  const on = info.bridge ? ` on ${info.bridge}` : '';
  if (!info.active)
    return {
      finding: {
        status: 'fail',
        summary: `network ${name} is not active${info.autostart ? '' : ' and not autostarted'}`,
        fix: `\`${virsh} net-start ${name}\`${info.autostart ? '' : ` and \`${virsh} net-autostart ${name}\``}`,
      },
      ...bridge,
    };
  if (!info.autostart)
    return {
      finding: { status: 'warn', summary: `network ${name} is active${on} but not autostarted: it will be down after a reboot`, fix: `\`${virsh} net-autostart ${name}\`` },
      ...bridge,
    };
  return { finding: { status: 'ok', summary: `network ${name} is active${on} and autostarted` }, ...bridge };
}

export interface ForwardChain {
  policy?: string;
  rules: string[];
}

/** `iptables -S FORWARD`: the policy line and the rules. */
export function parseForwardChain(stdout: string): ForwardChain {
  const lines = stdout.split('\n').map((l) => l.trim()).filter(Boolean);
  const policy = lines.map((l) => /^-P FORWARD (\S+)/.exec(l)?.[1]).find((p) => p !== undefined);
  return { ...(policy ? { policy } : {}), rules: lines.filter((l) => l.startsWith('-A FORWARD')) };
}

/**
 * Docker sets the FORWARD policy to DROP. libvirt's iptables rules still let its bridge through
 * (they sit in FORWARD), but when libvirt writes nftables rules instead, the DROP policy cuts
 * NAT guests off. Undefined: nothing to say.
 */
export function forwardVerdict(r: ToolRun, bridge: string, docker: boolean): Finding | undefined {
  if (r.missing || r.status !== 0) {
    if (!docker) return undefined;
    return {
      status: 'warn',
      summary: 'Docker is installed here and may have set the iptables FORWARD policy to DROP, which cuts NAT guests off; reading iptables needs root',
      fix: 'look with `sudo iptables -S FORWARD` (or `sudo rum doctor`, which reads it and names the rules to add)',
    };
  }
  const chain = parseForwardChain(r.stdout);
  if (chain.policy !== 'DROP') return undefined;
  const lets = chain.rules.some((l) => /-j LIBVIRT_FW[IOX]\b/.test(l) || (new RegExp(`-[io] ${escapeRegExp(bridge)}\\b`).test(l) && /-j ACCEPT\b/.test(l)));
  if (lets) return { status: 'ok', summary: `the FORWARD policy is DROP, but rules in it let ${bridge} through` };
  const chainName = chain.rules.some((l) => /-j DOCKER-USER\b/.test(l)) ? 'DOCKER-USER' : 'FORWARD';
  return {
    status: 'warn',
    summary: `the iptables FORWARD policy is DROP (Docker sets it) and no rule lets ${bridge} through: NAT guests may be cut off from the network`,
    fix:
      `\`sudo iptables -I ${chainName} -i ${bridge} -j ACCEPT && ` +
      `sudo iptables -I ${chainName} -o ${bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\``,
  };
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
