// Owns: checks that need more than one field, or the host's filesystem, to decide. Not: the shape
// of a single field (schema.ts) or where in the file a path is (load.ts hands us `locate`, and
// places each problem: in a machine's own block, or in the top-level defaults it inherited).
import { stat } from 'node:fs/promises';
import { isSessionUri } from '../libvirt/uri.js';
import type { Config, Port } from './schema.js';

export { isSessionUri }; // config's readers ask it here

/** A path into rum.yaml, as zod reports it: `['mounts', 1, 'target']`. */
export type ConfigPath = readonly PropertyKey[];

/** Where a path is in the file. `source` is that line's text; absent when there is no line to show. */
export interface Place {
  line: number;
  col: number;
  length?: number;
  source?: string;
}

/** `key`: the key of the pair at the path (`memroy:`); `value`: what follows it. */
export type Locate = (path: ConfigPath, part?: 'key' | 'value') => Place;

/** A problem with one VM's settings, at a path into them; the loader finds where it was written. */
export interface Problem {
  path: ConfigPath;
  part?: 'key' | 'value';
  message: string;
  hint?: string;
}

// Mounting over these leaves a guest that cannot boot or cannot be reached.
const SYSTEM_DIRS = new Set([
  '/bin', '/boot', '/dev', '/etc', '/home', '/lib', '/lib32', '/lib64', '/proc', '/run', '/sbin',
  '/sys', '/usr', '/var',
]);

/** Every cross-field and filesystem problem of one VM. Empty: all good. `locate` is for the
 * line numbers of other fields that a message mentions. */
export async function checkRules(config: Config, locate: Locate, opts: { mountSources: boolean } = { mountSources: true }): Promise<Problem[]> {
  const at = (path: ConfigPath, message: string, hint?: string): Problem => ({ path, message, ...(hint === undefined ? {} : { hint }) });
  const line = (path: ConfigPath) => locate(path).line;
  const found: Problem[] = [];
  const session = isSessionUri(config.libvirt.uri);

  if (session && config.network.mode === 'nat') {
    found.push(
      at(
        ['network', 'mode'],
        `network.mode nat needs a libvirt network, which ${config.libvirt.uri} cannot use`,
        'use network.mode: user, or libvirt.uri: qemu:///system',
      ),
    );
  }

  const sources = opts.mountSources ? await Promise.all(config.mounts.map((m) => sourceProblem(m.hostPath))) : [];
  sources.forEach((problem, i) => {
    if (problem) found.push(at(['mounts', i, 'source'], `mount source ${JSON.stringify(config.mounts[i]!.source)} ${problem}`,
      `it resolves to ${config.mounts[i]!.hostPath} (relative sources are relative to rum.yaml)`));
  });

  const home = `/home/${config.ssh.user}`;
  const targets = config.mounts.map((m) => m.target.replace(/\/+$/, ''));
  targets.forEach((target, i) => {
    const problem = targetProblem(target, home, targets.slice(0, i), (j) => line(['mounts', j, 'target']));
    if (problem) found.push(at(['mounts', i, 'target'], ...problem));
    if (session && config.mounts[i]!.type === 'virtiofs') {
      found.push(at(['mounts', i, 'type'], `mount type virtiofs is refused by libvirt with ${config.libvirt.uri}`,
        'use type: 9p, or type: auto (9p in session mode, virtiofs in system mode)'));
    }
  });

  config.ports.forEach((port, i) => {
    const j = config.ports.slice(0, i).findIndex((other) => sameHostSocket(other, port));
    if (j >= 0)
      found.push(at(['ports', i, 'host'], `host port ${hostSocketText(port, config.ports[j]!)} is already forwarded by ports[${j}] (line ${line(['ports', j, 'host'])})`,
        'each host address and port can be forwarded once: pick another host port'));
  });

  return found;
}

/** Whether two forwards want one socket on the host: the same port and protocol, on the same
 * address or where either is 0.0.0.0, which takes the port on every address. */
export function sameHostSocket(a: Port, b: Port): boolean {
  return a.host === b.host && a.proto === b.proto && (a.bind === b.bind || a.bind === '0.0.0.0' || b.bind === '0.0.0.0');
}

/** `127.0.0.1:8080/tcp`; `8080/tcp on 0.0.0.0` when `other`, which it clashes with, binds elsewhere. */
export function hostSocketText(port: Port, other: Port): string {
  return other.bind === port.bind ? `${port.bind}:${port.host}/${port.proto}` : `${port.host}/${port.proto} on ${port.bind}`;
}

/** What is wrong with a mount target, given the targets before it: [message, hint]. */
function targetProblem(target: string, home: string, earlier: string[], lineOf: (j: number) => number): [string, string] | undefined {
  if (SYSTEM_DIRS.has(target)) return [`mount target ${target} would hide the guest's own ${target}`, 'mount under /srv, /mnt or your home, e.g. /home/rum/src'];
  if (target === home || target === `${home}/.ssh`)
    return [`mount target ${target} would hide ${home}/.ssh, which rum needs to log in`, `mount a directory inside ${home} instead`];
  for (const [j, other] of earlier.entries()) {
    const clash =
      other === target ? `is already the target of mounts[${j}]`
      : target.startsWith(`${other}/`) ? `is inside ${other}, the target of mounts[${j}]`
      : other.startsWith(`${target}/`) ? `contains ${other}, the target of mounts[${j}]`
      : undefined;
    if (clash) return [`mount target ${target} ${clash} (line ${lineOf(j)})`, 'give each mount its own directory, neither one inside another'];
  }
  return undefined;
}

/** Why a mount source is not usable, or undefined when it is a directory. */
async function sourceProblem(hostPath: string): Promise<string | undefined> {
  try {
    return (await stat(hostPath)).isDirectory() ? undefined : 'is not a directory';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'does not exist';
    if (code === 'EACCES') return 'cannot be read (permission denied)';
    throw err;
  }
}
