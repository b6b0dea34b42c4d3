// Owns: finding rum.yaml (here or in a parent, like git) and reading it; where its rum.lock is. Kept apart from the
// parser so a fast command with a cached config never loads yaml or zod.
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ConfigError, RumError } from '../errors.js';

export const CONFIG_FILE = 'rum.yaml';

/** rum.lock beside the config file: rum.yaml -> rum.lock, ci.rum.yml -> ci.rum.lock. */
export function lockPathFor(configFile: string): string {
  return join(dirname(configFile), `${basename(configFile).replace(/\.ya?ml$/, '')}.lock`);
}

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
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new RumError('CONFIG_INVALID', `${file} does not exist`, 'create it with `rum init`', { cause: err });
    throw new RumError('CONFIG_INVALID', `cannot read ${file}: ${(err as Error).message}`, undefined, { cause: err });
  }
  return { file, text: utf8Text(bytes, file) };
}

const strict = new TextDecoder('utf-8', { fatal: true });

/** The file's text; bytes that are not UTF-8 are refused at their line, never read as U+FFFD. */
export function utf8Text(bytes: Uint8Array, file: string): string {
  try {
    return strict.decode(bytes);
  } catch {
    let start = 0;
    for (let line = 1; ; line++) {
      const nl = bytes.indexOf(0x0a, start);
      const end = nl < 0 ? bytes.length : nl;
      const raw = bytes.subarray(start, end);
      try {
        strict.decode(raw);
      } catch {
        const shown = new TextDecoder('utf-8').decode(raw); // what was not UTF-8 shows as U+FFFD
        const col = shown.indexOf('\ufffd') + 1;
        // Everything before it decoded, so it encodes back to the same bytes: the bad byte follows.
        const byte = raw[Buffer.byteLength(shown.slice(0, Math.max(col - 1, 0)))] ?? 0;
        throw new ConfigError([
          {
            file,
            line,
            col: col > 0 ? col : 1,
            message: `not UTF-8: byte 0x${byte.toString(16).padStart(2, '0')} here (rum.yaml must be UTF-8)`,
            hint: 're-save the file as UTF-8 (iconv -f LATIN1 -t UTF-8, or your editor\'s encoding setting)',
            source: shown,
          },
        ]);
      }
      if (nl < 0) break;
      start = nl + 1;
    }
    return new TextDecoder('utf-8').decode(bytes); // unreachable: some line failed above
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
