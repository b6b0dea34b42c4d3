// Owns: remembering a validated rum.yaml, so a fast command on an unchanged file pays neither
// for the yaml parser nor for zod (together more than Node's own start-up). Keyed by the file's
// path and bytes, rum's version and what resolution reads from the environment.
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeAtomic } from '../files/atomic.js';
import { digestOf } from '../graph/digest.js';
import { cacheHome } from '../paths.js';
import type { Config } from './schema.js';

declare const RUM_VERSION: string | undefined;
const VERSION = typeof RUM_VERSION === 'string' ? RUM_VERSION : 'dev';

interface Entry {
  key: string;
  config: Config;
}

const entryPath = (file: string, env: NodeJS.ProcessEnv) => join(cacheHome(env), 'rum', 'config', `${digestOf(file)}.json`);
const keyOf = (file: string, text: string, env: NodeJS.ProcessEnv) =>
  digestOf(JSON.stringify([VERSION, file, env.HOME ?? '', env.RUM_IMAGE_MIRROR ?? '', text]));

/**
 * The config for `file` if this exact text was validated before and what the filesystem checks
 * read still holds (mount sources are directories); otherwise undefined: load it properly.
 */
export async function cachedConfig(file: string, text: string, env: NodeJS.ProcessEnv): Promise<Config | undefined> {
  let entry: Entry;
  try {
    entry = JSON.parse(await readFile(entryPath(file, env), 'utf8')) as Entry;
  } catch {
    return undefined;
  }
  if (entry.key !== keyOf(file, text, env)) return undefined;
  for (const m of entry.config.mounts) {
    const st = await stat(m.hostPath).catch(() => undefined);
    if (!st?.isDirectory()) return undefined; // the full loader reports it at rum.yaml:line:col
  }
  return entry.config;
}

export async function rememberConfig(file: string, text: string, env: NodeJS.ProcessEnv, config: Config): Promise<void> {
  const path = entryPath(file, env);
  try {
    await mkdir(resolve(path, '..'), { recursive: true });
    await writeAtomic(path, JSON.stringify({ key: keyOf(file, text, env), config } satisfies Entry));
  } catch {
    // A cache: failing to write it only costs speed next time.
  }
}
