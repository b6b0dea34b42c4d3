// Owns: remembering a validated rum.yaml (and rum.lock), so a fast command on an unchanged file pays neither
// for the yaml parser nor for zod (together more than Node's own start-up). Keyed by the file's
// path and bytes, rum's version and what resolution reads from the environment.
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeAtomic } from '../files/atomic.js';
import { digestOf } from '../graph/digest.js';
import { cacheHome } from '../paths.js';
import type { Pins } from './lock-file.js';
import type { Project } from './schema.js';

declare const RUM_VERSION: string | undefined;
const VERSION = typeof RUM_VERSION === 'string' ? RUM_VERSION : 'dev';

// Bumped whenever what an entry holds changes shape: 2, a Project (every machine) where 1 held a
// Config. An entry of another format never matches a key, so it is never read as this one.
const FORMAT = 2;

interface Entry {
  key: string;
  project: Project;
}

const entryPath = (file: string, env: NodeJS.ProcessEnv) => join(cacheHome(env), 'rum', 'config', `${digestOf(file)}.json`);
const keyOf = (file: string, text: string, env: NodeJS.ProcessEnv) =>
  digestOf(JSON.stringify([FORMAT, VERSION, file, env.HOME ?? '', env.RUM_IMAGE_MIRROR ?? '', text]));

/**
 * The project for `file` if this exact text was validated before and what the filesystem checks
 * read still holds (every machine's mount sources are directories); otherwise undefined: load it properly.
 */
export async function cachedProject(file: string, text: string, env: NodeJS.ProcessEnv, opts: { mountSources?: boolean } = {}): Promise<Project | undefined> {
  let entry: Entry;
  try {
    entry = JSON.parse(await readFile(entryPath(file, env), 'utf8')) as Entry;
  } catch {
    return undefined;
  }
  if (entry?.key !== keyOf(file, text, env) || !Array.isArray(entry.project?.machines)) return undefined;
  const sources = new Set(entry.project.machines.flatMap((c) => c.mounts.map((m) => m.hostPath)));
  for (const hostPath of opts.mountSources === false ? [] : sources) {
    const st = await stat(hostPath).catch(() => undefined);
    if (!st?.isDirectory()) return undefined; // the full loader reports it at rum.yaml:line:col
  }
  return entry.project;
}

export async function rememberProject(file: string, text: string, env: NodeJS.ProcessEnv, project: Project): Promise<void> {
  const path = entryPath(file, env);
  try {
    await mkdir(resolve(path, '..'), { recursive: true });
    await writeAtomic(path, JSON.stringify({ key: keyOf(file, text, env), project } satisfies Entry));
  } catch {
    // A cache: failing to write it only costs speed next time.
  }
}

// rum.lock's pins by the lock's path and bytes: a fast command with a lock loads no yaml either.
const pinsPath = (file: string, env: NodeJS.ProcessEnv) => join(cacheHome(env), 'rum', 'config', `${digestOf(file)}.lock.json`);
const pinsKey = (file: string, text: string) => digestOf(JSON.stringify([FORMAT, VERSION, file, text]));

export async function cachedPins(file: string, text: string, env: NodeJS.ProcessEnv): Promise<Pins | undefined> {
  try {
    const entry = JSON.parse(await readFile(pinsPath(file, env), 'utf8')) as { key?: string; pins?: Pins };
    return entry?.key === pinsKey(file, text) && entry.pins && typeof entry.pins === 'object' ? entry.pins : undefined;
  } catch {
    return undefined;
  }
}

export async function rememberPins(file: string, text: string, env: NodeJS.ProcessEnv, pins: Pins): Promise<void> {
  const path = pinsPath(file, env);
  try {
    await mkdir(resolve(path, '..'), { recursive: true });
    await writeAtomic(path, JSON.stringify({ key: pinsKey(file, text), pins }));
  } catch {
    // A cache: failing to write it only costs speed next time.
  }
}
