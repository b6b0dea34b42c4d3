// Owns: finding rum.yaml (here or in a parent, like git) and reading it. Kept apart from the
// parser so a fast command with a cached config never loads yaml or zod.
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { RumError } from '../errors.js';

export const CONFIG_FILE = 'rum.yaml';

/** The rum.yaml in `startDir` or the nearest parent directory, like git finds .git. */
export function findConfig(startDir: string): string {
  const start = resolve(startDir);
  for (let dir = start; ; dir = dirname(dir)) {
    const candidate = join(dir, CONFIG_FILE);
    if (isFile(candidate)) return candidate;
    if (dirname(dir) === dir) break;
  }
  throw new RumError(
    'CONFIG_INVALID',
    `no ${CONFIG_FILE} in ${start} or any directory above it`,
    `create one with \`rum init\`, or name one with -c PATH`,
  );
}

/** The config file named by `file` (a file or a directory holding one), or found from cwd. */
export async function readConfig(opts: { file?: string; cwd?: string }): Promise<{ file: string; text: string }> {
  const cwd = resolve(opts.cwd ?? process.cwd());
  let file = opts.file === undefined ? findConfig(cwd) : resolve(cwd, opts.file);
  if (opts.file !== undefined && isDirectory(file)) file = join(file, CONFIG_FILE);
  try {
    return { file, text: await readFile(file, 'utf8') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new RumError('CONFIG_INVALID', `${file} does not exist`, 'create it with `rum init`', { cause: err });
    throw new RumError('CONFIG_INVALID', `cannot read ${file}: ${(err as Error).message}`, undefined, { cause: err });
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
