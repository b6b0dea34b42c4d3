// Owns: where rum keeps things. Every file in a VM directory is named once, here.
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { RumError } from './errors.js';

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function dataHome(env = process.env): string {
  return env.XDG_DATA_HOME && env.XDG_DATA_HOME.startsWith('/') ? env.XDG_DATA_HOME : join(homedir(), '.local/share');
}

export function cacheHome(env = process.env): string {
  return env.XDG_CACHE_HOME && env.XDG_CACHE_HOME.startsWith('/') ? env.XDG_CACHE_HOME : join(homedir(), '.cache');
}

/** The shared, content-addressed image cache. */
export function imageCacheDir(env = process.env): string {
  return join(cacheHome(env), 'rum', 'images');
}

export function vmsRoot(env = process.env): string {
  return join(dataHome(env), 'rum');
}

export const VmFile = {
  owner: 'owner.json', // which rum.yaml owns this directory (another project with the name is refused)
  state: 'state.json', // per node: key, field digests, output digest; rewritten after each node
  lock: 'lock', // held for a whole run, so two runs on one VM never interleave
  clientKey: 'id_ed25519', // the VM's own SSH client key (0600)
  clientPub: 'id_ed25519.pub',
  hostKey: 'ssh_host_ed25519_key', // the guest's host key, made here and injected, so it is pinned before boot
  hostPub: 'ssh_host_ed25519_key.pub',
  knownHosts: 'known_hosts', // the pinned guest host key, for OpenSSH
  metaData: 'meta-data',
  userData: 'user-data',
  networkConfig: 'network-config',
  seedIso: 'seed.iso',
  overlay: 'disk.qcow2', // holds the guest's data: rebuilt only by --reset or destroy
  domainXml: 'domain.xml',
  diskSnapshotXml: 'disk-snapshot.xml', // moves a running guest onto a new top (rum snapshot save)
  console: 'console.log', // the serial console, written by QEMU (through virtlogd)
  sshPort: 'ssh-port', // user-mode networking: the 127.0.0.1 port forwarded to the guest's 22
  sshControl: 'ssh.sock', // the shared SSH connection's socket (0600), served by a control master
  snapshots: 'snapshots.json', // the snapshots' names and layers, and an operation under way
  layers: 'layers', // a directory: one read-only qcow2 per snapshot, the disk's backing chain
  digestCache: 'digests.json', // (dev, ino, size, mtime, ctime) -> digest, so unchanged files are read 0 times
} as const;

export type VmFileName = keyof typeof VmFile;

/** A VM's directory. The name is checked here too: it is about to become a path component. */
export class VmDir {
  readonly dir: string;
  constructor(
    readonly name: string,
    env = process.env,
  ) {
    if (!DNS_LABEL.test(name)) {
      throw new RumError('CONFIG_INVALID', `"${name}" is not a valid VM name`, 'use a DNS label, e.g. name: myproj');
    }
    this.dir = join(vmsRoot(env), name);
  }
  path(file: VmFileName): string {
    return join(this.dir, VmFile[file]);
  }
  /** True when `p` lies inside this VM's directory: the only place rum ever deletes. */
  contains(p: string): boolean {
    const abs = resolve(p);
    return abs.startsWith(this.dir + '/');
  }
}
