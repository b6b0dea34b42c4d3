// A scratch project and the real rum binary, with its own XDG directories: tests drive rum as a
// user would and assert on its exit status, stderr and --json output.
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { parse, stringify } from 'yaml';
import type { TestContext } from 'node:test';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const rumBin = join(repoRoot, 'bin/rum.js');

export interface Rig {
  root: string;
  dir: string; // the project directory (holds rum.yaml)
  env: NodeJS.ProcessEnv;
  rum(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  rumJson<T = any>(...args: string[]): Promise<T>;
  vmFile(name: string): string;
  writeConfig(config: unknown): Promise<void>;
  editConfig(edit: (c: any) => void): Promise<void>;
}

export async function scratchProject(
  t: TestContext,
  config: unknown,
  opts: { name?: string; root?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Rig> {
  const root = opts.root ?? (await mkdtemp(join(tmpdir(), 'rum-rig-')));
  if (!opts.root) t.after(() => rm(root, { recursive: true, force: true }));
  const dir = join(root, opts.name ?? 'proj');
  await mkdir(dir, { recursive: true });
  const env = {
    ...process.env,
    XDG_DATA_HOME: join(root, 'data'),
    XDG_CACHE_HOME: join(root, 'cache'),
    NO_COLOR: '1',
    ...opts.env,
  };
  const rig: Rig = {
    root,
    dir,
    env,
    rum: async (...args) => {
      const r = await execa(process.execPath, [rumBin, ...args], { cwd: dir, env, reject: false, stdin: 'ignore' });
      return { code: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
    },
    rumJson: async (...args) => {
      const r = await rig.rum(...args, '--json');
      try {
        return JSON.parse(r.stdout);
      } catch {
        throw new Error(`rum ${args.join(' ')} --json gave no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
      }
    },
    vmFile: (name) => join(env.XDG_DATA_HOME!, 'rum', opts.name ?? 'proj', name),
    writeConfig: (c) => writeFile(join(dir, 'rum.yaml'), typeof c === 'string' ? c : stringify(c)),
    editConfig: async (edit) => {
      const c = parse(await readFile(join(dir, 'rum.yaml'), 'utf8'));
      edit(c);
      await rig.writeConfig(c);
    },
  };
  await rig.writeConfig(config);
  return rig;
}

export async function run(cmd: string, args: string[]): Promise<string> {
  const r = await execa(cmd, args, { reject: false, all: true });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.exitCode}:\n${r.all}`);
  return r.stdout;
}
