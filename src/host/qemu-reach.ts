// Owns: who QEMU runs as for a libvirt URI, and whether that identity can pass through every
// directory down to a file rum hands it (a disk in ~/.local/share/rum, a base image in
// ~/.cache/rum). Used by `rum doctor` (home-access) and by the hint of a start that libvirt
// refused for a file. Knows nothing of rum.yaml or the graph.
import { execFile, execFileSync } from 'node:child_process';
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { RumError } from '../errors.js';
import { userInfo } from 'node:os';
import { isSessionUri } from '../libvirt/uri.js';
import { shellQuote } from '../ssh/openssh.js';
import { loginGids, parseGroupFile } from './probe.js';

export interface Who {
  name: string;
  uid: number;
  gids: number[];
}

export interface DirFacts {
  path: string;
  uid: number;
  gid: number;
  mode: number;
  /** From getfacl when the bits say no: may `who` pass anyway? undefined: not known. */
  acl?: boolean;
}

/** libvirt's QEMU user on the distributions rum knows, as /etc/passwd names it. */
const QEMU_USERS = ['libvirt-qemu', 'qemu'];

/**
 * QEMU's identity: the user's own process under qemu:///session; root's under qemu:///system
 * when root runs rum (tasks/domain-xml.ts gives it root's label); else libvirt's QEMU user.
 */
export function qemuIdentity(uri: string, files: { passwd: string; group: string } = readIdFiles()): Who | undefined {
  const groups = parseGroupFile(files.group);
  const me = currentUser();
  if (isSessionUri(uri)) return { name: me.username, uid: me.uid, gids: loginGids(me.username, me.gid, groups) };
  if (me.uid === 0) return { name: 'root', uid: 0, gids: [0] };
  for (const name of QEMU_USERS) {
    const f = files.passwd.split('\n').map((l) => l.split(':')).find((f) => f[0] === name);
    if (f && f[2] !== undefined && f[3] !== undefined) return { name, uid: Number(f[2]), gids: loginGids(name, Number(f[3]), groups) };
  }
  return undefined;
}

/** os.userInfo() throws for a uid with no passwd entry (a container run with -u 1234). */
export function currentUser(): { username: string; uid: number; gid: number } {
  try {
    return userInfo();
  } catch {
    const uid = process.getuid?.() ?? -1;
    return { username: String(uid), uid, gid: process.getgid?.() ?? -1 };
  }
}

function readIdFiles(): { passwd: string; group: string } {
  const read = (p: string) => {
    try {
      return readFileSync(p, 'utf8');
    } catch {
      return '';
    }
  };
  return { passwd: read('/etc/passwd'), group: read('/etc/group') };
}

/** May `who` pass through this directory (x), by its permission bits? The owner's bits win. */
export function searchable(d: DirFacts, who: Who): boolean {
  if (d.acl !== undefined) return d.acl;
  if (d.uid === who.uid) return (d.mode & 0o100) !== 0;
  if (who.gids.includes(d.gid)) return (d.mode & 0o010) !== 0;
  return (d.mode & 0o001) !== 0;
}

/** What getfacl grants `who` on a directory, or undefined when there is no ACL or no getfacl. */
export function aclSearchable(aclText: string, who: Who): boolean | undefined {
  const entries = aclText.split('\n').map((l) => l.trim().split(':'));
  const named = (kind: string, q: string) => entries.find((e) => e[0] === kind && e[1] === q)?.[2];
  const mask = entries.find((e) => e[0] === 'mask')?.[2];
  const x = (perm: string | undefined) => perm !== undefined && perm.includes('x') && (mask === undefined || mask.includes('x'));
  const user = named('user', who.name) ?? named('user', String(who.uid));
  return user === undefined ? undefined : x(user); // no entry of its own: the bits tell it
}

/** The directories from / down to `dir` (inclusive) that exist; `missing`: the first that does not. */
export function dirChain(dir: string, who: Who): { chain: DirFacts[]; missing?: string } {
  const parts = dir.split('/').filter(Boolean);
  const chain: DirFacts[] = [];
  for (let i = 0; i <= parts.length; i++) {
    const path = `/${parts.slice(0, i).join('/')}`;
    let s;
    try {
      s = statSync(path);
    } catch {
      return { chain, missing: path };
    }
    if (!s.isDirectory()) return { chain, missing: path };
    const d: DirFacts = { path, uid: s.uid, gid: s.gid, mode: s.mode & 0o7777 };
    if (!searchable(d, who)) {
      const acl = getfacl(path);
      const verdict = acl === undefined ? undefined : aclSearchable(acl, who);
      if (verdict !== undefined) d.acl = verdict;
    }
    chain.push(d);
  }
  return { chain };
}

function getfacl(path: string): string | undefined {
  try {
    return execFileSync('getfacl', ['-cp', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 2000 });
  } catch {
    return undefined;
  }
}

/** The directories on the way to `dir` that `who` cannot pass through. */
export function blockedDirs(dir: string, who: Who): DirFacts[] {
  return dirChain(dir, who).chain.filter((d) => !searchable(d, who));
}

/** The command that lets `who` through: an ACL for just that user (yours need no sudo). */
export const REACH_ALTERNATIVE = '(setfacl is in package acl; chmod o+x on them works too)';
export function reachFix(who: Who, blocked: DirFacts[], me = currentUser().uid): string {
  const mine = blocked.filter((d) => d.uid === me).map((d) => d.path);
  const others = blocked.filter((d) => d.uid !== me).map((d) => d.path);
  // A command to paste: every path one shell word, whatever it holds.
  const cmd = (dirs: string[], sudo: boolean) => `${sudo ? 'sudo ' : ''}setfacl -m ${shellQuote(`u:${who.name}:x`)} ${dirs.map(shellQuote).join(' ')}`;
  const parts = [mine.length ? cmd(mine, false) : '', others.length ? cmd(others, true) : ''].filter(Boolean);
  return parts.join(' && ');
}

/**
 * The hint for a file libvirt's QEMU could not open: which directories stop it and the command
 * that lets it through. `asUid`: the identity libvirt names in its message ("as uid:64055").
 */
export function reachHint(file: string, uri: string, asUid?: number): string {
  const files = readIdFiles();
  let who = qemuIdentity(uri, files);
  if (asUid !== undefined && who?.uid !== asUid) {
    const f = files.passwd.split('\n').map((l) => l.split(':')).find((f) => f[2] === String(asUid));
    who = { name: f?.[0] ?? String(asUid), uid: asUid, gids: f?.[3] ? loginGids(f[0]!, Number(f[3]), parseGroupFile(files.group)) : [] };
  }
  if (!who) return `check that ${file} exists and that QEMU's user may read it`;
  const dir = file.slice(0, file.lastIndexOf('/')) || '/';
  const blocked = blockedDirs(dir, who);
  if (blocked.length === 0) return `QEMU runs as ${who.name} under ${uri}: check that ${file} exists and that ${who.name} may read it`;
  return `QEMU runs as ${who.name} under ${uri} and cannot pass through ${blocked.map((d) => d.path).join(', ')}: ${reachFix(who, blocked)} ${REACH_ALTERNATIVE}`;
}

/** setfacl on PATH, or undefined (package acl). */
export function setfaclPath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH ?? '').split(':').filter((d) => d.startsWith('/'))) {
    try {
      accessSync(`${dir}/setfacl`, constants.X_OK);
      return `${dir}/setfacl`;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/**
 * Whether a VM's disk files keep their owner under `uri`: when libvirt's QEMU user is not the
 * user (qemu:///system, rum not run by root) and setfacl can let that user in. Otherwise
 * libvirt hands the files to its QEMU user, and gives back only the writable ones.
 */
export function keepsOwners(uri: string, env: NodeJS.ProcessEnv = process.env): boolean {
  return !isSessionUri(uri) && process.getuid?.() !== 0 && setfaclPath(env) !== undefined && qemuIdentity(uri) !== undefined;
}

/** Lets libvirt's QEMU user read (and for `rw`, write) these files of the user's, by an ACL. */
export async function grantQemu(uri: string, files: { path: string; write: boolean }[]): Promise<void> {
  const who = qemuIdentity(uri);
  const setfacl = setfaclPath();
  if (!who || !setfacl) return;
  for (const write of [true, false]) {
    const paths = files.filter((f) => f.write === write).map((f) => f.path);
    if (paths.length === 0) continue;
    await new Promise<void>((resolve, reject) =>
      execFile(setfacl, ['-m', `u:${who.name}:${write ? 'rw' : 'r'}`, '--', ...paths], { timeout: 10_000 }, (err, _out, stderr) =>
        err
          ? reject(
              new RumError('FAILED', `cannot let ${who.name} (QEMU under ${uri}) reach ${paths.join(', ')}: ${String(stderr).trim() || err.message}`,
                'the filesystem may not support ACLs (mount it with acl), or set XDG_DATA_HOME to one that does'),
            )
          : resolve(),
      ),
    );
  }
}
