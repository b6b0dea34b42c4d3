// Driving the real rum binary in the test namespace: a project directory with its own XDG dirs,
// rum run through rum-in-ns (it talks to the guest, so it must run where QEMU's network is).
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { execa } from 'execa';
import { parse, stringify } from 'yaml';
import { PYTHON, RUN_DIR, inNs, repoRoot, rumBin, scratchDir, userIds, userPath } from './env.js';

export interface E2eProject {
  dir: string;
  dataHome: string;
  cacheHome: string;
  vmDir: string;
  rum(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Another rum (a previous release) on the same project, with the same environment. */
  rumWith(bin: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  rumJson<T = any>(...args: string[]): Promise<T>;
  exec(command: string): Promise<{ code: number; stdout: string; stderr: string }>;
  /** rum in the background (e.g. `forward`), ended with SIGINT like Ctrl-C, by its PID. */
  rumBackground(...args: string[]): {
    /** Resolves, with the match, once rum has printed `pattern` (stdout or stderr); fails after `ms`. */
    waitFor(pattern: RegExp, ms?: number): Promise<RegExpMatchArray>;
    /** Sends `signal` (default SIGINT, like Ctrl-C) and waits for rum to exit. */
    stop(signal?: NodeJS.Signals): Promise<{ code: number; stdout: string; stderr: string }>;
    /** Waits for rum to exit by itself. */
    done(): Promise<{ code: number; stdout: string; stderr: string }>;
  };
  editConfig(edit: (c: any) => void): Promise<void>;
}

/** The debian-12 shorthand, served from a local mirror of the test image inside the namespace. */
export async function imageMirror(): Promise<string> {
  const r = await execa(join(repoRoot, 'test/e2e/image-mirror.sh'), ['start']);
  return r.stdout.trim();
}

/**
 * A project whose rum runs in the namespace, as root or as `user`. `home`: the project lives in
 * the user's home and rum keeps its VM and cache where a user's rum does (~/.local/share/rum,
 * ~/.cache/rum), as a person would run it; else both go to a scratch directory under /tmp.
 */
export async function e2eProject(
  t: TestContext,
  config: Record<string, unknown>,
  /**
   * `dataFs`: the data directory (VMs) on a tmpfs of that size, e.g. '256m', so a test can fill it.
   * `suiteCache`: the image cache every test asking for it shares (a layer built once serves them).
   * `like`: another project's data and cache directories, as two projects of one user share them.
   */
  opts: { user?: string; home?: boolean; dataFs?: string; suiteCache?: boolean; like?: E2eProject } = {},
): Promise<E2eProject> {
  // Registered before the scratch directory's removal, so it runs first (after-hooks run in
  // order): the VM is destroyed while its directory still exists.
  let project: E2eProject | undefined;
  let mounted: string | undefined;
  t.after(async () => {
    if (project) await project.rum('destroy', '-y');
    if (mounted) await execa('umount', [mounted]); // before the rmdir registered below
  });
  // A run killed earlier may have left this test's domain behind (in our private libvirtd);
  // rum rightly refuses a domain another rum.yaml owns, so clear it first.
  const uri = (config.libvirt as { uri?: string } | undefined)?.uri ?? 'qemu:///system';
  const asUser = opts.user && uri.endsWith('/session') ? { user: opts.user } : {};
  const machines = Object.keys((config.machines as Record<string, unknown> | undefined) ?? {});
  const domains = machines.length > 0 ? machines.map((m) => `${String(config.name)}-${m}`) : [String(config.name)];
  for (const d of domains) for (const cmd of ['destroy', 'undefine']) await inNs('virsh', ['-c', uri, cmd, d], { reject: false, ...asUser });
  const home = opts.user && opts.home ? userIds(opts.user).home : undefined;
  const root = home ? await homeScratchDir(t, opts.user!, home) : await scratchDir(t, opts.user ? { owner: opts.user } : {});
  const dir = join(root, 'proj');
  await mkdir(dir);
  const mirror = await imageMirror();
  let dataHome = opts.like?.dataHome ?? (home ? join(home, '.local/share') : join(root, 'data'));
  const cacheHome = opts.like?.cacheHome ?? (home ? join(home, '.cache') : opts.suiteCache ? join(RUN_DIR, 'suite-cache') : join(root, 'cache'));
  if (opts.dataFs) {
    // Under the environment's shared mount point: a mount made elsewhere would not reach the
    // daemons' mount namespaces (test/e2e/env.sh).
    mounted = await mkdtemp(join(RUN_DIR, 'mnt', 'data-'));
    await execa('mount', ['-t', 'tmpfs', '-o', `size=${opts.dataFs},mode=0755`, 'tmpfs', mounted]);
    dataHome = mounted;
    t.after(() => rm(mounted!, { recursive: true, force: true }));
  }
  const env: Record<string, string> = {
    ...(home ? {} : { XDG_DATA_HOME: dataHome, XDG_CACHE_HOME: cacheHome }),
    RUM_IMAGE_MIRROR: mirror,
    NO_COLOR: '1',
    PATH: opts.user ? userPath : `${userPath}:/usr/local/sbin:/usr/sbin:/sbin`,
  };
  const file = join(dir, 'rum.yaml');
  const write = async (c: unknown) => {
    await writeFile(file, stringify(c));
    if (opts.user) {
      const { uid, gid } = userIds(opts.user);
      await chown(dir, uid, gid);
      await chown(file, uid, gid);
    }
  };
  await write(config);
  const p: E2eProject = {
    dir,
    dataHome,
    cacheHome,
    vmDir: join(dataHome, 'rum', String(config.name)),
    rum: (...args) => p.rumWith(rumBin, ...args),
    rumWith: async (bin, ...args) => {
      const r = await inNs('env', [...Object.entries(env).map(([k, v]) => `${k}=${v}`), bin, ...args], {
        cwd: dir,
        reject: false,
        stdin: 'ignore',
        stripFinalNewline: false, // output exactly as rum printed it
        timeout: 15 * 60_000,
        ...(opts.user ? { user: opts.user } : {}),
      });
      const out = { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
      t.diagnostic(`rum ${args.join(' ')} -> ${out.code}`);
      return out;
    },
    rumJson: async (...args) => {
      const r = await p.rum(...args, '--json');
      try {
        return JSON.parse(r.stdout);
      } catch {
        throw new Error(`rum ${args.join(' ')} --json: no JSON (exit ${r.code})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      }
    },
    exec: (command) => p.rum('exec', '--', 'sh', '-c', command),
    rumBackground: (...args) => {
      const child = inNs('env', [...Object.entries(env).map(([k, v]) => `${k}=${v}`), rumBin, ...args], {
        cwd: dir,
        reject: false,
        stdin: 'ignore',
        timeout: 10 * 60_000,
        ...(opts.user ? { user: opts.user } : {}),
      }) as Promise<unknown> & { kill(signal: NodeJS.Signals): boolean; stdout: NodeJS.ReadableStream; stderr: NodeJS.ReadableStream };
      const finished = async () => {
        const r = (await child) as { exitCode?: number; signal?: string; stdout?: unknown; stderr?: unknown };
        const code = r.exitCode ?? (r.signal === 'SIGKILL' ? 137 : -1);
        t.diagnostic(`rum ${args.join(' ')} (background) -> ${code}`);
        return { code, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
      };
      let seen = '';
      const waiters = new Set<() => void>();
      const take = (d: Buffer) => {
        seen += d.toString();
        for (const w of waiters) w();
      };
      child.stdout.on('data', take);
      child.stderr.on('data', take);
      return {
        waitFor: (pattern, ms = 120_000) =>
          new Promise<RegExpMatchArray>((resolve, reject) => {
            const check = () => {
              const m = seen.match(pattern);
              if (!m) return;
              waiters.delete(check);
              clearTimeout(timer);
              resolve(m);
            };
            const timer = setTimeout(() => {
              waiters.delete(check);
              reject(new Error(`rum ${args.join(' ')} did not print ${pattern} within ${ms} ms; it printed:\n${seen}`));
            }, ms);
            waiters.add(check);
            check();
          }),
        stop: async (signal = 'SIGINT') => {
          child.kill(signal); // rum-in-ns execs into ip netns exec, which execs env, then node: one PID
          return finished();
        },
        done: () => finished(),
      };
    },
    editConfig: async (edit) => {
      const c = parse(await readFile(file, 'utf8'));
      edit(c);
      await write(c);
    },
  };
  project = p;
  return p;
}

/** Ids of the nodes a run built (or rebuilt), sorted. */
export const builtIds = (res: { built: string[] }) => [...res.built].sort();

/** An HTTP GET from inside the namespace (where the forwards listen). Bounded retries. */
export async function httpGetInNs(url: string): Promise<string> {
  const code = `
import sys, time, urllib.request
for i in range(40):
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode()); sys.exit(0)
    except Exception as e:
        last = e; time.sleep(0.5)
print(last, file=sys.stderr); sys.exit(1)`;
  return String((await inNs(PYTHON, ['-c', code, url], { timeout: 60_000 })).stdout);
}


/** A directory in the user's home, theirs, removed after the test (kept with RUM_E2E_KEEP=1). */
async function homeScratchDir(t: TestContext, user: string, home: string): Promise<string> {
  const dir = await mkdtemp(join(home, 'rum-e2e-'));
  const { uid, gid } = userIds(user);
  await chown(dir, uid, gid);
  await chmod(dir, 0o755); // as `mkdir` makes it under the usual umask (mkdtemp: 0700)
  t.after(async () => {
    if (process.env.RUM_E2E_KEEP === '1') t.diagnostic(`kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  });
  return dir;
}
