// Owns: how an e2e test reaches the private VM environment that test/e2e/env.sh starts
// (network namespace "rumtest", a libvirtd inside it, the test user, the in-namespace apt
// repo) and the guest image fixtures/guest-image/build.sh caches.
// Not: starting or stopping that environment (env.sh), building the image (build.sh).
//
// The network rule: every process that talks to a guest (ssh, scp, curl, rum) runs inside the
// namespace, through inNs(). virsh() for qemu:///system may run anywhere (unix socket); for
// qemu:///session it always goes through inNs() as the test user, because a session virsh
// spawns the user's libvirtd (and so its QEMUs) in whatever namespace it is called from.
import { execa, type Options, type Result } from 'execa';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

export const NS = 'rumtest';
export const TEST_USER = 'rumtest';
export const RUN_DIR = '/run/rum-test';
export const LIBVIRT_SOCK = '/run/libvirt/libvirt-sock';
export const SYSTEM_URI = 'qemu:///system';
export const SESSION_URI = 'qemu:///session';
/** Debian's python3 (root's PATH may put a pyenv shim first). */
export const PYTHON = '/usr/bin/python3';
/** Name prefix for every domain a test defines: `env.sh stop` always removes these. */
export const DOMAIN_PREFIX = 'rumtest-';
const IMAGE_LINK = 'debian-12-rumtest.qcow2';

/** The repository root, found from this file (works from test/e2e and dist/test/e2e). */
export const repoRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && /"name"\s*:\s*"rum"/.test(readFileSync(pkg, 'utf8'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('test/e2e/env: cannot find the rum repository root');
})();

export const rumInNsPath = join(repoRoot, 'test/e2e/rum-in-ns');
/** rum as users get it: installed from the packed tarball by `make e2e-install`, not the checkout. */
export const E2E_PREFIX = process.env.E2E_PREFIX || join(RUN_DIR, 'prefix');
export const rumBin = join(E2E_PREFIX, 'bin/rum');
/** An ordinary user's PATH, with rum's install on it (npm's global bin directory). */
export const userPath = `${join(E2E_PREFIX, 'bin')}:/usr/local/bin:/usr/bin:/bin`;

export const imageCacheDir = (env = process.env): string => env.IMAGE_CACHE || '/var/cache/rum-test';

/**
 * The cached guest image: the hashed file the stable symlink points at (use it as an overlay's
 * backing file, so a rebuilt image never changes a disk under a VM). Undefined when not built.
 */
export function imagePath(env = process.env): string | undefined {
  try {
    return realpathSync(join(imageCacheDir(env), IMAGE_LINK));
  } catch {
    return undefined;
  }
}

/** KEY=VALUE records env.sh writes once the environment is fully up. */
export function envRecord(): Record<string, string> | undefined {
  let text: string;
  try {
    text = readFileSync(join(RUN_DIR, 'env'), 'utf8');
  } catch {
    return undefined;
  }
  const rec: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) rec[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return rec;
}

/**
 * Where a guest finds the in-namespace apt repo (packages: inotify-tools, libinotifytools0):
 * under SLIRP the namespace's loopback is 10.0.2.2; under NAT, the default network's bridge.
 * For user-data: `apt: {preserve_sources_list: false, sources_list: "deb [trusted=yes] URL ./"}`.
 */
export function repoUrl(mode: 'slirp' | 'nat'): string {
  const rec = envRecord();
  const url = mode === 'slirp' ? rec?.RUM_TEST_REPO_SLIRP : rec?.RUM_TEST_REPO_NAT;
  return url ?? (mode === 'slirp' ? 'http://10.0.2.2:8080' : 'http://192.168.122.1:8080');
}

function pidAlive(name: string, comm: string): boolean {
  try {
    const pid = readFileSync(join(RUN_DIR, `${name}.pid`), 'utf8').trim();
    return /^\d+$/.test(pid) && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm;
  } catch {
    return false;
  }
}

export interface Readiness {
  ok: boolean;
  why: string;
}

/** Is the environment up (namespace, our libvirtd and its socket, env record)? Cheap, sync. */
export function envReady(): Readiness {
  const start = 'run: test/e2e/env.sh start';
  if (process.platform !== 'linux') return { ok: false, why: 'e2e tests need Linux' };
  if (userInfo().uid !== 0) return { ok: false, why: 'e2e tests need root (network namespaces, libvirt)' };
  if (!existsSync(`/run/netns/${NS}`)) return { ok: false, why: `network namespace ${NS} is missing (${start})` };
  if (!pidAlive('libvirtd', 'libvirtd')) return { ok: false, why: `the environment's libvirtd is not running (${start})` };
  let sock = false;
  try {
    sock = statSync(LIBVIRT_SOCK).isSocket();
  } catch {
    /* absent */
  }
  if (!sock) return { ok: false, why: `${LIBVIRT_SOCK} is missing (${start})` };
  if (envRecord() === undefined) return { ok: false, why: `${RUN_DIR}/env is missing: start did not finish (${start})` };
  if (!existsSync(rumBin)) return { ok: false, why: `rum is not installed at ${E2E_PREFIX} (run: make e2e-install)` };
  return { ok: true, why: 'ready' };
}

/**
 * Why a test that boots a guest cannot run here, or undefined when it can. Use as
 * `const why = bootSkipReason(); if (why) return t.skip(why);` so it shows as skipped, never
 * as passed. With RUM_E2E_REQUIRE=1 (CI, after env.sh start) it throws instead: a broken
 * environment then fails the suite rather than skipping it quietly.
 */
export function bootSkipReason(opts: { session?: boolean } = {}): string | undefined {
  const why = bootSkipWhy(opts);
  if (why !== undefined && process.env.RUM_E2E_REQUIRE === '1') throw new Error(`e2e environment: ${why}`);
  return why;
}

function bootSkipWhy(opts: { session?: boolean }): string | undefined {
  const ready = envReady();
  if (!ready.ok) return ready.why;
  if (imagePath() === undefined)
    return `no guest image in ${imageCacheDir()} (run: make image, or fixtures/guest-image/build.sh ${imageCacheDir()})`;
  if (opts.session && !existsSync(join(envRecord()?.RUM_TEST_USER_HOME ?? `/home/${TEST_USER}`)))
    return `test user ${TEST_USER} has no home directory`;
  return undefined;
}

export type NsOptions = Options & { user?: string };

/** Run a command inside the namespace (as root, or as `user`), through test/e2e/rum-in-ns. */
export function inNs(cmd: string, args: readonly string[] = [], opts: NsOptions = {}): Promise<Result> {
  const { user, ...execaOpts } = opts;
  const pre = user ? ['--user', user] : [];
  return execa(rumInNsPath, [...pre, cmd, ...args], execaOpts) as Promise<Result>;
}

/** virsh against our libvirtd (system), or the test user's session daemon inside the namespace. */
export async function virsh(args: readonly string[], opts: { session?: boolean; timeout?: number } = {}): Promise<string> {
  const timeout = opts.timeout ?? 120_000;
  const env = { LC_ALL: 'C' };
  const res = opts.session
    ? await inNs('virsh', ['-c', SESSION_URI, ...args], { user: TEST_USER, env, timeout })
    : await execa('virsh', ['-c', SYSTEM_URI, ...args], { env, timeout });
  return String(res.stdout);
}

/**
 * A fresh directory under /tmp, removed after the test (kept with RUM_E2E_KEEP=1, for a look).
 * Mode 0755: in system mode QEMU runs as libvirt-qemu and must reach the files in it.
 * `owner`: chown it to that user (session mode: QEMU runs as the user and writes here).
 */
export async function scratchDir(t: TestContext, opts: { owner?: string } = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rum-e2e-'));
  await chmod(dir, 0o755);
  if (opts.owner) {
    const { uid, gid } = userIds(opts.owner);
    await chown(dir, uid, gid);
  }
  t.after(async () => {
    if (process.env.RUM_E2E_KEEP === '1') t.diagnostic(`kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

/** uid/gid of a local user, from /etc/passwd. */
export function userIds(name: string): { uid: number; gid: number; home: string } {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f[2] !== undefined && f[3] !== undefined)
      return { uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '/' };
  }
  throw new Error(`no such user: ${name}`);
}

/** A TCP port free on the namespace's 127.0.0.1 right now (for a SLIRP hostfwd). */
export async function freePortInNs(): Promise<number> {
  const code = 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])';
  return Number((await inNs(PYTHON, ['-c', code])).stdout);
}

export interface SshTarget {
  port: number;
  key: string;
  user: string;
  host?: string; // default 127.0.0.1 (a SLIRP hostfwd inside the namespace)
}

/** OpenSSH client arguments for a throwaway guest (host key not checked: it is new every boot). */
export function sshArgs(to: SshTarget): string[] {
  return [
    '-i', to.key,
    '-p', String(to.port),
    '-o', 'BatchMode=yes',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'LogLevel=ERROR',
    '-o', 'ConnectTimeout=5',
    `${to.user}@${to.host ?? '127.0.0.1'}`,
  ];
}

/** Run a command in the guest over ssh, from inside the namespace. */
export function guestSsh(to: SshTarget, command: string, opts: NsOptions = {}): Promise<Result> {
  return inNs('ssh', [...sshArgs(to), command], { timeout: 60_000, ...opts });
}

/**
 * Retry `ssh true` until it succeeds (a SLIRP forwarded port accepts TCP before sshd is up, so
 * retry on any ssh failure), at most `attempts` times and `timeoutMs` in all. Returns the ms it
 * took; throws with the last error (and `onFail()`'s text, e.g. the console log's tail).
 */
export async function waitForSsh(
  to: SshTarget,
  opts: { timeoutMs?: number; attempts?: number; intervalMs?: number; onFail?: () => Promise<string> } = {},
): Promise<number> {
  const { timeoutMs = 180_000, attempts = 90, intervalMs = 2_000 } = opts;
  const t0 = Date.now();
  let last = '';
  for (let i = 0; i < attempts && Date.now() - t0 < timeoutMs; i++) {
    const res = await guestSsh(to, 'true', { reject: false, timeout: 20_000 });
    if (res.exitCode === 0) return Date.now() - t0;
    last = String(res.stderr).trim() || `exit ${res.exitCode ?? res.signal}`;
    await sleep(intervalMs);
  }
  const extra = opts.onFail ? `\n${await opts.onFail()}` : '';
  throw new Error(`ssh to ${to.user}@127.0.0.1:${to.port} not up after ${Date.now() - t0} ms: ${last}${extra}`);
}

/** Poll `virsh domstate` until it is `state`, bounded by time and count. Returns the ms it took. */
export async function waitForDomState(
  name: string,
  state: string,
  opts: { session?: boolean; timeoutMs?: number; intervalMs?: number } = {},
): Promise<number> {
  const { timeoutMs = 60_000, intervalMs = 200 } = opts;
  const t0 = Date.now();
  let now = '';
  for (let i = 0; i < Math.ceil(timeoutMs / intervalMs) && Date.now() - t0 < timeoutMs; i++) {
    now = (await virsh(['domstate', name], { session: opts.session })).trim();
    if (now === state) return Date.now() - t0;
    await sleep(intervalMs);
  }
  throw new Error(`domain ${name} still "${now}" after ${Date.now() - t0} ms (wanted "${state}")`);
}

/** Last `lines` lines of a file, or a note that it cannot be read. */
export function tail(file: string, lines = 30): string {
  try {
    return `--- last lines of ${file} ---\n${readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n')}`;
  } catch (err) {
    return `(cannot read ${file}: ${(err as Error).message})`;
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
