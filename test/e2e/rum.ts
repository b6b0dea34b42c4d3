// Driving the real rum binary in the test namespace: a project directory with its own XDG dirs,
// rum run through rum-in-ns (it talks to the guest, so it must run where QEMU's network is).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { execa } from 'execa';
import { parse, stringify } from 'yaml';
import { PYTHON, inNs, repoRoot, rumBin, scratchDir, userIds } from './env.js';

export interface E2eProject {
  dir: string;
  dataHome: string;
  vmDir: string;
  rum(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  rumJson<T = any>(...args: string[]): Promise<T>;
  exec(command: string): Promise<{ code: number; stdout: string; stderr: string }>;
  /** rum in the background (e.g. `forward`), ended with SIGINT like Ctrl-C, by its PID. */
  rumBackground(...args: string[]): { stop(): Promise<{ code: number; stdout: string; stderr: string }> };
  editConfig(edit: (c: any) => void): Promise<void>;
}

/** The debian-12 shorthand, served from a local mirror of the test image inside the namespace. */
export async function imageMirror(): Promise<string> {
  const r = await execa(join(repoRoot, 'test/e2e/image-mirror.sh'), ['start']);
  return r.stdout.trim();
}

export async function e2eProject(t: TestContext, config: Record<string, unknown>, opts: { user?: string } = {}): Promise<E2eProject> {
  // Registered before the scratch directory's removal, so it runs first (after-hooks run in
  // order): the VM is destroyed while its directory still exists.
  let project: E2eProject | undefined;
  t.after(async () => {
    if (project) await project.rum('destroy', '-y');
  });
  // A run killed earlier may have left this test's domain behind (in our private libvirtd);
  // rum rightly refuses a domain another rum.yaml owns, so clear it first.
  const uri = opts.user ? 'qemu:///session' : 'qemu:///system';
  for (const cmd of ['destroy', 'undefine'])
    await inNs('virsh', ['-c', uri, cmd, String(config.name)], { reject: false, ...(opts.user ? { user: opts.user } : {}) });
  const root = await scratchDir(t, opts.user ? { owner: opts.user } : {});
  const dir = join(root, 'proj');
  await mkdir(dir);
  const mirror = await imageMirror();
  const env: Record<string, string> = {
    XDG_DATA_HOME: join(root, 'data'),
    XDG_CACHE_HOME: join(root, 'cache'),
    RUM_IMAGE_MIRROR: mirror,
    NO_COLOR: '1',
    PATH: process.env.PATH ?? '/usr/bin:/bin',
  };
  const file = join(dir, 'rum.yaml');
  const write = async (c: unknown) => {
    await writeFile(file, stringify(c));
    if (opts.user) {
      const { uid, gid } = userIds(opts.user);
      const { chown } = await import('node:fs/promises');
      await chown(dir, uid, gid);
      await chown(file, uid, gid);
    }
  };
  await write(config);
  const p: E2eProject = {
    dir,
    dataHome: env.XDG_DATA_HOME!,
    vmDir: join(env.XDG_DATA_HOME!, 'rum', String(config.name)),
    rum: async (...args) => {
      const r = await inNs('env', [...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, rumBin, ...args], {
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
      const child = inNs('env', [...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, rumBin, ...args], {
        cwd: dir,
        reject: false,
        stdin: 'ignore',
        timeout: 10 * 60_000,
        ...(opts.user ? { user: opts.user } : {}),
      }) as Promise<unknown> & { kill(signal: NodeJS.Signals): boolean; exitCode?: number | null };
      return {
        stop: async () => {
          child.kill('SIGINT'); // rum-in-ns execs into ip netns exec, which execs env, then node: one PID
          const r = (await child) as { exitCode?: number; stdout?: unknown; stderr?: unknown };
          return { code: r.exitCode ?? -1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
        },
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

