// Owns: cheap facts about this host that decide how a domain is built (is KVM really usable,
// where virtiofsd lives). Never launches QEMU or asks libvirt: libvirt's domain capabilities
// advertise kvm even where KVM cannot run a guest (see the vm-test-env recipe).
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

export interface KvmVerdict {
  usable: boolean;
  /** Why, in words a user can act on; every reason when there are several. */
  why: string;
}

/** Where to look; tests point these at fixtures. */
export interface KvmProbe {
  devKvm?: string;
  cpuinfo?: string;
  sysModule?: string;
}

/**
 * True only when all of these hold: /dev/kvm opens read-write for this process, /proc/cpuinfo
 * shows vmx or svm, and the KVM module is not the paravirtual kvm_pvm (on which QEMU's KVM
 * accelerator aborts or hangs: measured, see the recipe). The flags are the decisive signal: a
 * nested KVM that really works exposes them.
 */
export async function kvmUsable(probe: KvmProbe = {}): Promise<KvmVerdict> {
  const devKvm = probe.devKvm ?? '/dev/kvm';
  const cpuinfo = probe.cpuinfo ?? '/proc/cpuinfo';
  const sysModule = probe.sysModule ?? '/sys/module';
  const problems: string[] = [];

  try {
    const fh = await open(devKvm, 'r+');
    await fh.close();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') problems.push(`${devKvm} does not exist (no KVM module, or not passed into this container)`);
    else if (code === 'EACCES' || code === 'EPERM')
      problems.push(`${devKvm} is not readable and writable by this user (join the kvm group)`);
    else problems.push(`${devKvm} cannot be opened: ${(err as Error).message}`);
  }

  let flags: Set<string> | undefined;
  try {
    flags = cpuFlags(await readFile(cpuinfo, 'utf8'));
  } catch (err) {
    problems.push(`${cpuinfo} cannot be read: ${(err as Error).message}`);
  }
  if (flags && !flags.has('vmx') && !flags.has('svm')) {
    problems.push(`the CPU flags in ${cpuinfo} have neither vmx nor svm (no hardware virtualisation is exposed here)`);
  }

  if (existsSync(join(sysModule, 'kvm_pvm'))) {
    problems.push('the KVM module is kvm_pvm (paravirtual nested KVM), which cannot run QEMU guests');
  }

  if (problems.length > 0) return { usable: false, why: problems.join('; ') };
  const ext = flags?.has('vmx') ? 'vmx' : 'svm';
  return { usable: true, why: `${devKvm} opens read-write and the CPU has ${ext}` };
}

/** The union of the `flags` lines of a /proc/cpuinfo text. */
export function cpuFlags(cpuinfo: string): Set<string> {
  const flags = new Set<string>();
  for (const line of cpuinfo.split('\n')) {
    const m = /^flags\s*:(.*)$/.exec(line);
    if (m) for (const f of m[1]!.trim().split(/\s+/)) if (f) flags.add(f);
  }
  return flags;
}

/** Where Debian and Fedora put virtiofsd (it is not on PATH there); then PATH. */
export const VIRTIOFSD_CANDIDATES = ['/usr/libexec/virtiofsd', '/usr/lib/qemu/virtiofsd'] as const;

/** The virtiofsd executable, or undefined when there is none (then only 9p can share folders). */
export function virtiofsdPath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromPath = (env.PATH ?? '')
    .split(delimiter)
    .filter((d) => d.startsWith('/'))
    .map((d) => join(d, 'virtiofsd'));
  return [...VIRTIOFSD_CANDIDATES, ...fromPath].find(isExecutableFile);
}

function isExecutableFile(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}
