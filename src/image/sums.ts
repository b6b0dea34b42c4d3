// Owns: reading checksum lists (SHA256SUMS, SHA512SUMS) and `algo:hex` checksums, and taking a
// file's checksum. Not: fetching them (download.ts) or deciding which file to look up
// (shorthands.ts, cache.ts).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { RumError } from '../errors.js';

export type HashAlgo = 'sha256' | 'sha512';

export interface Checksum {
  algo: HashAlgo;
  hex: string; // lowercase
}

export interface SumsEntry {
  name: string;
  hex: string; // lowercase
  algo: HashAlgo; // from the BSD tag, or from the digest's length in the GNU format
}

const HEX_LENGTH: Record<HashAlgo, number> = { sha256: 64, sha512: 128 };

function algoOfLength(len: number): HashAlgo | undefined {
  return len === 64 ? 'sha256' : len === 128 ? 'sha512' : undefined;
}

/** `sha256:<64 hex>` or `sha512:<128 hex>` (the form image.checksum uses). */
export function parseChecksum(text: string): Checksum {
  const m = /^(sha256|sha512):([0-9a-fA-F]+)$/.exec(text.trim());
  const algo = m?.[1] as HashAlgo | undefined;
  if (!m || !algo || m[2]!.length !== HEX_LENGTH[algo]) {
    throw new RumError(
      'CONFIG_INVALID',
      `"${text}" is not a checksum`,
      'write sha256:<64 hex digits> or sha512:<128 hex digits>',
    );
  }
  return { algo, hex: m[2]!.toLowerCase() };
}

export function formatChecksum(c: Checksum): string {
  return `${c.algo}:${c.hex}`;
}

/** The file's whole content hashed with `algo` (lowercase hex). */
export async function fileChecksum(path: string, algo: HashAlgo, signal?: AbortSignal): Promise<Checksum> {
  const h = createHash(algo);
  // Large reads: a multi-GB image is read in far fewer syscalls than with the 64 KiB default.
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 2 ** 20, signal }) as AsyncIterable<Buffer>) {
    h.update(chunk);
  }
  return { algo, hex: h.digest('hex') };
}

/**
 * Every entry of a checksum list. Understands the GNU coreutils output (`<hex>  name` for text
 * mode, `<hex> *name` for binary mode, a leading `\` when the name is escaped) and the BSD/tagged
 * form (`SHA512 (name) = <hex>`). Anything else (comments, PGP armour, blank lines) is skipped.
 */
export function parseSums(text: string): SumsEntry[] {
  const entries: SumsEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (line === '' || line.startsWith('#')) continue;
    const bsd = /^\\?(SHA256|SHA512) \((.+)\) = ([0-9a-fA-F]+)$/.exec(line);
    if (bsd) {
      const algo = bsd[1]!.toLowerCase() as HashAlgo;
      if (bsd[3]!.length !== HEX_LENGTH[algo]) continue;
      const name = line.startsWith('\\') ? unescapeName(bsd[2]!) : bsd[2]!;
      entries.push({ name, hex: bsd[3]!.toLowerCase(), algo });
      continue;
    }
    const gnu = /^(\\?)([0-9a-fA-F]+) [ *](.+)$/.exec(line);
    if (gnu) {
      const algo = algoOfLength(gnu[2]!.length);
      if (!algo) continue;
      const name = gnu[1] === '\\' ? unescapeName(gnu[3]!) : gnu[3]!;
      entries.push({ name, hex: gnu[2]!.toLowerCase(), algo });
    }
  }
  return entries;
}

// coreutils escapes `\` and newline in names and marks such lines with a leading backslash.
function unescapeName(name: string): string {
  return name.replace(/\\(\\|n|r)/g, (_, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : '\\'));
}

/**
 * The digest listed for `fileName` with `algo`, or undefined when the list has none.
 * A name matches exactly or with a leading `./`. Two different digests for one name is an error:
 * the list cannot be trusted to say which file is meant.
 */
export function findSum(text: string, fileName: string, algo: HashAlgo): string | undefined {
  const hits = new Set(
    parseSums(text)
      .filter((e) => e.algo === algo && (e.name === fileName || e.name === `./${fileName}`))
      .map((e) => e.hex),
  );
  if (hits.size > 1) {
    throw new RumError('IMAGE', `the checksum list gives ${hits.size} different ${algo} digests for ${fileName}`);
  }
  return [...hits][0];
}
