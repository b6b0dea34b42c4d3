// Owns: the doctor's checks of this machine itself: KVM, whether QEMU can reach rum's directories
// (home-access), AppArmor/SELinux (security), the tools rum runs (virtiofsd, qemu, qemu-img, ssh)
// and free space (disk). Each deciding step is a pure function; the checks gather facts for them.
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { stat, statfs } from 'node:fs/promises';
import { homedir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { kvmUsable, virtiofsdPath, type KvmVerdict } from '../libvirt/caps.js';
import { isLocalUri, isSessionUri } from '../libvirt/uri.js';
import { cacheHome, imageCacheDir, vmsRoot } from '../paths.js';
import { combine, tildeFor, type CheckStatus, type DoctorTarget, type Finding } from './check.js';
import { readTextMaybe, runTool, type ToolRun } from './probe.js';
import { currentUser, dirChain, qemuIdentity, REACH_ALTERNATIVE, reachFix, searchable, type DirFacts, type Who } from './qemu-reach.js';

const RELOGIN = 'then log out and in again';

// ---- kvm ----

export async function checkKvm(): Promise<Finding> {
  return kvmVerdict(await kvmUsable());
}

/** TCG works, only slower: a warning, never a failure. */
export function kvmVerdict(v: KvmVerdict): Finding {
  if (v.usable) return { status: 'ok', summary: `KVM is usable (${v.why})` };
  const fix = kvmFix(v.why);
  return { status: 'warn', summary: `KVM is not usable, so guests run under TCG emulation (works, much slower): ${v.why}`, ...(fix ? { fix } : {}) };
}

/** The fix for the most basic of kvmUsable's reasons; undefined when there is none to run. */
export function kvmFix(why: string): string | undefined {
  if (/neither vmx nor svm/.test(why)) return 'enable VT-x/AMD-V in the firmware, or nested virtualisation when this host is itself a VM';
  if (/kvm_pvm/.test(why)) return undefined;
  if (/does not exist/.test(why)) return '`sudo modprobe kvm_intel` (or `kvm_amd`); in a container, pass /dev/kvm in';
  if (/not readable and writable/.test(why)) return `\`sudo usermod -aG kvm $USER\`, ${RELOGIN}`;
  return undefined;
}

// ---- home-access ----

export interface ReachFacts {
  uri: string;
  /** QEMU's identity under the URI; undefined: libvirt's QEMU user is not in /etc/passwd. */
  who: Who | undefined;
  home: string;
  targets: { path: string; chain: DirFacts[]; missing?: string }[];
}

export async function checkHomeAccess(t: DoctorTarget): Promise<Finding> {
  if (!isLocalUri(t.uri)) return { status: 'ok', summary: `not checked: ${t.uri} runs QEMU on another host` };
  const who = qemuIdentity(t.uri);
  const targets = who ? [vmsRoot(t.env), imageCacheDir(t.env)].map((path) => ({ path, ...dirChain(path, who) })) : [];
  return reachVerdict({ uri: t.uri, who, home: homedir(), targets });
}

export function reachVerdict(f: ReachFacts, me = currentUser().uid): Finding {
  if (!f.who) return { status: 'warn', summary: `no libvirt-qemu or qemu user in /etc/passwd: cannot tell whether QEMU reaches rum's files under ${f.uri}` };
  const as = f.who.uid === me ? `you (${f.who.name})` : f.who.name;
  const show = (p: string) => tildeFor(p, f.home);
  const blocked = [...new Map(f.targets.flatMap((t) => t.chain.filter((d) => !searchable(d, f.who!))).map((d) => [d.path, d])).values()];
  if (blocked.length > 0) {
    const bits = blocked.map((d) => `${d.path} (mode ${d.mode.toString(8).padStart(4, '0')}, uid ${d.uid})`).join(', ');
    return {
      status: 'fail',
      summary: `QEMU runs as ${as} under ${f.uri} and cannot pass through ${bits} to reach ${f.targets.map((t) => show(t.path)).join(' and ')}`,
      fix: `\`${reachFix(f.who, blocked, me)}\` ${REACH_ALTERNATIVE}`,
    };
  }
  const notYet = f.targets.filter((t) => t.missing !== undefined).map((t) => show(t.path));
  return {
    status: 'ok',
    summary:
      `QEMU runs as ${as} under ${f.uri} and can pass through every directory down to ${f.targets.map((t) => show(t.path)).join(' and ')}` +
      (notYet.length > 0 ? ` (${notYet.length === f.targets.length ? 'neither is' : `${notYet.join(', ')} is not`} made yet: rum makes them as you)` : ''),
  };
}

// ---- security ----

export type Denials = { readable: false } | { readable: true; from: string; lines: string[] };

export interface SecurityFacts {
  apparmor: boolean;
  apparmorProfile: boolean;
  selinux?: 'enforcing' | 'permissive';
  denials: Denials;
}

const DENIAL = /apparmor="DENIED"|avc:\s+denied/;
const OURS = /qemu|libvirt|virtiofsd|svirt/i;

/** Denials that concern QEMU or libvirt, from kernel or audit log lines; audit lines older than `since` (epoch s) left out. */
export function denialLines(text: string, since: number): string[] {
  return text.split('\n').filter((l) => {
    if (!DENIAL.test(l) || !OURS.test(l)) return false;
    const at = /audit\((\d+)(?:\.\d+)?:\d+\)/.exec(l)?.[1];
    return at === undefined || Number(at) >= since;
  });
}

async function recentDenials(t: DoctorTarget, signal: AbortSignal): Promise<Denials> {
  const opts = { env: t.env, signal };
  // A journal this user may not read (or none) prints nothing at all: ask for one line first.
  const [probe, hour] = await Promise.all([
    runTool('journalctl', ['-k', '-n', '1', '--no-pager', '-o', 'cat'], opts),
    runTool('journalctl', ['-k', '--since', '-1h', '--no-pager', '-o', 'cat'], opts),
  ]);
  if (!probe.missing && probe.status === 0 && probe.stdout.trim() !== '' && !hour.missing && hour.status === 0)
    return { readable: true, from: 'the kernel log', lines: denialLines(hour.stdout, 0) };
  const audit = await readTextMaybe('/var/log/audit/audit.log');
  if (audit !== undefined) return { readable: true, from: '/var/log/audit/audit.log', lines: denialLines(audit, Date.now() / 1000 - 3600) };
  return { readable: false };
}

export async function checkSecurity(t: DoctorTarget, signal: AbortSignal): Promise<Finding> {
  if (!isLocalUri(t.uri)) return { status: 'ok', summary: `not checked: ${t.uri} runs QEMU on another host` };
  const apparmor = (await readTextMaybe('/sys/module/apparmor/parameters/enabled'))?.trim() === 'Y';
  const enforce = (await readTextMaybe('/sys/fs/selinux/enforce'))?.trim();
  const selinux = enforce === '1' ? 'enforcing' : enforce === '0' ? 'permissive' : undefined;
  if (!apparmor && !selinux) return securityVerdict({ apparmor, apparmorProfile: false, denials: { readable: true, from: '', lines: [] } });
  return securityVerdict({
    apparmor,
    apparmorProfile: existsSync('/etc/apparmor.d/usr.sbin.libvirtd'),
    ...(selinux ? { selinux } : {}),
    denials: await recentDenials(t, signal),
  });
}

/** Never a failure: a confinement is not a fault, and an unreadable log is not one either. */
export function securityVerdict(f: SecurityFacts): Finding {
  if (!f.apparmor && !f.selinux) return { status: 'ok', summary: 'neither AppArmor nor SELinux is enabled: nothing here confines QEMU' };
  const what = [
    ...(f.apparmor ? [`AppArmor is enabled (${f.apparmorProfile ? "libvirt's profile is installed" : 'no libvirtd profile: libvirt runs unconfined'})`] : []),
    ...(f.selinux ? [`SELinux is ${f.selinux}`] : []),
  ].join(', ');
  if (!f.denials.readable) {
    const enforcing = f.selinux === 'enforcing';
    return {
      status: enforcing ? 'warn' : 'ok',
      summary: `${what}; could not read the kernel or audit log (root needed), so recent denials are unknown`,
      ...(enforcing ? { fix: 'look with `sudo ausearch -m avc -ts recent` (or run `sudo rum doctor`)' } : {}),
    };
  }
  const n = f.denials.lines.length;
  if (n === 0) return { status: 'ok', summary: `${what}; no denial of QEMU or libvirt in the last hour (${f.denials.from})` };
  const last = f.denials.lines.at(-1)!.trim();
  return {
    status: 'warn',
    summary: `${what}; ${n} denial${n > 1 ? 's' : ''} of QEMU or libvirt in the last hour (${f.denials.from}), the last: ${last.length > 200 ? `${last.slice(0, 200)}...` : last}`,
    fix: `see them all with \`sudo journalctl -k --since -1h | grep -E 'apparmor="DENIED"|avc: +denied'\`${f.selinux ? ' or `sudo ausearch -m avc -ts recent`' : ''}`,
  };
}

// ---- tools ----

export async function checkVirtiofsd(t: DoctorTarget): Promise<Finding> {
  if (isSessionUri(t.uri)) return { status: 'ok', summary: `not used: under ${t.uri} mounts use 9p` };
  if (!isLocalUri(t.uri)) return { status: 'ok', summary: `not checked: ${t.uri} runs QEMU on another host` };
  const path = virtiofsdPath(t.env);
  if (path) return { status: 'ok', summary: `found at ${path}: mounts use virtiofs` };
  return {
    status: 'warn',
    summary: 'not found: mounts use 9p instead, which is slower',
    fix: '`sudo apt install virtiofsd` (Debian 12+, Ubuntu 24.04+) or `sudo dnf install virtiofsd` (Fedora)',
  };
}

/** What each tool check runs, what it reports, and how to install the tool. */
export const TOOLS = {
  qemu: {
    args: ['--version'],
    version: (out: string) => /version (\S+)/.exec(out)?.[1],
    install: '`sudo apt install qemu-system-x86` (Debian/Ubuntu) or `sudo dnf install qemu-kvm` (Fedora)',
  },
  'qemu-img': {
    args: ['--version'],
    version: (out: string) => /version (\S+)/.exec(out)?.[1],
    install: '`sudo apt install qemu-utils` (Debian/Ubuntu) or `sudo dnf install qemu-img` (Fedora)',
  },
  ssh: {
    args: ['-V'],
    version: (out: string) => /(OpenSSH_[^\s,]+)/.exec(out)?.[1],
    install: '`sudo apt install openssh-client` (Debian/Ubuntu) or `sudo dnf install openssh-clients` (Fedora)',
  },
} as const;
export type ToolName = keyof typeof TOOLS;

export function toolVerdict(tool: ToolName, bin: string, r: ToolRun): Finding {
  const spec = TOOLS[tool];
  if (r.missing) return { status: 'fail', summary: `${bin} is not installed`, fix: spec.install };
  const out = `${r.stdout}\n${r.stderr}`;
  if (r.status !== 0) {
    const why = out.trim().split('\n').at(-1)?.trim() || `exit status ${r.status ?? 'none (killed)'}`;
    return { status: 'fail', summary: `\`${bin} ${spec.args.join(' ')}\` failed: ${why}`, fix: spec.install };
  }
  const v = spec.version(out);
  return { status: 'ok', summary: v ? `${bin}: ${v}` : `${bin} runs` };
}

/** The QEMU libvirt would run: qemu-system-x86_64 on PATH, or Fedora/RHEL's /usr/libexec/qemu-kvm. */
export function qemuPath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const onPath = (env.PATH ?? '').split(delimiter).filter((d) => d.startsWith('/')).map((d) => join(d, 'qemu-system-x86_64'));
  return [...onPath, '/usr/libexec/qemu-kvm'].find((p) => {
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  });
}

export async function checkTool(tool: ToolName, t: DoctorTarget, signal: AbortSignal): Promise<Finding> {
  if (tool === 'qemu' && !isLocalUri(t.uri)) return { status: 'ok', summary: `not checked: ${t.uri} runs QEMU on another host` };
  const bin = tool === 'qemu' ? (qemuPath(t.env) ?? 'qemu-system-x86_64') : tool;
  return toolVerdict(tool, bin, await runTool(bin, [...TOOLS[tool].args], { env: t.env, signal }));
}

// ---- disk ----

const GiB = 2 ** 30;
const gib = (b: number) => `${(b / GiB).toFixed(1)} GiB`;

/** < 2 GiB: a base image and a first disk do not fit; < 10 GiB: a guest's disk soon fills it. */
export function diskLevel(freeBytes: number): CheckStatus {
  return freeBytes < 2 * GiB ? 'fail' : freeBytes < 10 * GiB ? 'warn' : 'ok';
}

export interface SpaceFacts {
  /** Where rum keeps things on this filesystem, as shown to the user. */
  paths: string[];
  freeBytes: number;
}

export function diskVerdict(spaces: SpaceFacts[]): Finding {
  return combine(
    spaces.map((s) => {
      const status = diskLevel(s.freeBytes);
      return {
        status,
        summary: `${gib(s.freeBytes)} free for ${s.paths.join(' and ')}`,
        ...(status === 'ok'
          ? {}
          : { fix: `free space there (${status === 'fail' ? 'under 2 GiB' : 'under 10 GiB'}), or set XDG_DATA_HOME / XDG_CACHE_HOME to a larger filesystem` }),
      };
    }),
  );
}

/** The path, or its nearest ancestor that exists. */
async function nearestExisting(path: string): Promise<{ path: string; dev: number }> {
  for (let p = path; ; p = dirname(p)) {
    const s = await stat(p).catch(() => undefined);
    if (s) return { path: p, dev: s.dev };
    if (dirname(p) === p) throw new Error(`nothing of ${path} exists`);
  }
}

export async function checkDisk(t: DoctorTarget): Promise<Finding> {
  const home = homedir();
  const byDev = new Map<number, SpaceFacts>();
  for (const path of [join(cacheHome(t.env), 'rum'), vmsRoot(t.env)]) {
    const at = await nearestExisting(path);
    const known = byDev.get(at.dev);
    if (known) {
      known.paths.push(tildeFor(path, home));
      continue;
    }
    const s = await statfs(at.path);
    byDev.set(at.dev, { paths: [tildeFor(path, home)], freeBytes: s.bavail * s.bsize });
  }
  return diskVerdict([...byDev.values()]);
}
