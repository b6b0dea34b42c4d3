// Owns: rum.lock: what it holds, reading it with every problem at its line (as rum.yaml's are
// shown), and writing it in one stable order. Not: resolving an image (src/image/pin.ts) or
// deciding when the file is written (the commands).
//
// rum.lock is written by rum, read by rum and by people reviewing a diff: plain YAML, one entry
// per distinct image.base, keyed by image.base exactly as rum.yaml writes it.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { isAlias, isMap, isScalar, LineCounter, parseDocument, visit, type Node } from 'yaml';
import { ConfigError, RumError, type Diagnostic } from '../errors.js';
import { writeAtomic } from '../files/atomic.js';
import { isShorthand, isDistributionUrl } from '../image/shorthands.js';
import { baseKind, baseProblem } from './image-source.js';
import { Source } from './source.js';
import { duplicateKeys, syntaxProblems } from './yaml-checks.js';

export const LOCK_VERSION = 1;
const MAX_BYTES = 1024 * 1024; // thousands of entries; a larger file is not one rum wrote

/** One image as it was resolved. `url` absent: a local path, pinned by its content only. */
export interface PinnedImage {
  url?: string; // the distribution's URL (never a mirror's): the same for everyone
  digest: string; // sha256:<hex> or sha512:<hex>
  size: number; // bytes
  resolved: string; // when, UTC: 2026-12-04T21:48:14Z
}

/** image.base as rum.yaml writes it -> what it was resolved to. */
export type Pins = Record<string, PinnedImage>;

export { lockPathFor } from './find.js';

/** The pins of the lock at `path`; undefined when there is no such file. */
export async function readLock(path: string): Promise<Pins | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new RumError('CONFIG_INVALID', `cannot read ${path}: ${(err as Error).message}`, undefined, { cause: err });
  }
  return parseLock(bytes, path);
}

/** The pins in a lock's bytes; every problem found is thrown at once, at its line. */
export function parseLock(bytes: Uint8Array | string, file: string): Pins {
  const what = basename(file);
  const hint = `${what} is written by rum: \`rum update\` writes it afresh from rum.yaml`;
  const at1 = (message: string): ConfigError => new ConfigError([{ file, line: 1, col: 1, message, hint }], what);
  if (bytes.length > MAX_BYTES) throw at1(`${what} is larger than a lock file rum writes (over 1 MiB)`);
  let text: string;
  try {
    text = typeof bytes === 'string' ? bytes : new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw at1(`${what} is not UTF-8 text`);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false, logLevel: 'error' });
  const src = new Source(file, text, doc, lines);
  const withHint = (d: Diagnostic): Diagnostic => ({ ...d, hint: d.hint ?? hint });
  const syntax = [...syntaxProblems(src), ...duplicateKeys(src)];
  if (syntax.length > 0) throw new ConfigError(syntax.map(withHint), what);

  const problems: Diagnostic[] = [];
  const at = (node: Node | null | undefined, message: string, h?: string) =>
    problems.push(withHint(src.diagnostic(node ? src.nodePlace(node) : src.start(), message, h)));
  // rum writes no aliases, anchors or tags: a file with them was written by someone else.
  visit(doc, {
    Alias(_, n) {
      at(n, 'rum.lock has no aliases');
    },
    Node(_, n) {
      if (!isAlias(n) && (n.anchor !== undefined || n.tag !== undefined)) at(n, 'rum.lock has no anchors or tags');
    },
  });
  if (problems.length > 0) throw new ConfigError(problems, what);

  const top = doc.contents;
  if (!isMap(top)) throw new ConfigError([withHint(src.diagnostic(src.start(), `${what} must be a mapping with lock: and images:`))], what);
  const pins: Pins = {};
  let version: unknown;
  let images: Node | null | undefined;
  for (const pair of top.items) {
    const key = pair.key as Node;
    const name = scalarText(key);
    if (name === 'lock') version = isScalar(pair.value) ? pair.value.value : undefined;
    if (name === 'lock' && version !== LOCK_VERSION)
      at(pair.value as Node, typeof version === 'number' && version > LOCK_VERSION ? `${what} format ${version} is from a newer rum` : `lock: must be ${LOCK_VERSION}`,
        typeof version === 'number' && version > LOCK_VERSION ? 'upgrade rum, or let this one rewrite it: `rum update`' : undefined);
    else if (name === 'images') images = pair.value as Node | null;
    else if (name !== 'lock') at(key, `unknown key ${JSON.stringify(name ?? '')} in ${what}`);
  }
  if (version === undefined) at(top, `missing key "lock" (the format, ${LOCK_VERSION})`);
  if (images === undefined) at(top, 'missing key "images"');
  else if (images !== null && !(isScalar(images) && images.value === null)) {
    if (!isMap(images)) at(images, 'images: must be a mapping of image.base to its pin');
    else
      for (const pair of images.items) {
        const base = scalarText(pair.key as Node);
        if (base === undefined || base === '') {
          at(pair.key as Node, 'an image key must be image.base as rum.yaml writes it');
          continue;
        }
        const pin = readPin(base, pair.key as Node, pair.value as Node | null, at);
        if (pin) pins[base] = pin;
      }
  }
  if (problems.length > 0) throw new ConfigError(problems.sort((a, b) => a.line - b.line || a.col - b.col), what);
  return pins;
}

type At = (node: Node | null | undefined, message: string, hint?: string) => void;

const DIGEST = /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/;
const WHEN = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

function readPin(base: string, keyNode: Node, value: Node | null, at: At): PinnedImage | undefined {
  if (!isMap(value)) {
    at(value ?? keyNode, `${base}: must be a mapping with url:, digest:, size: and resolved:`);
    return undefined;
  }
  const fields: Record<string, { node: Node; value: unknown }> = {};
  let ok = true;
  for (const pair of value.items) {
    const k = scalarText(pair.key as Node) ?? '';
    const v = pair.value as Node | null;
    if (!['url', 'digest', 'size', 'resolved'].includes(k)) {
      at(pair.key as Node, `unknown key ${JSON.stringify(k)} in ${base}`);
      ok = false;
    } else fields[k] = { node: v ?? (pair.key as Node), value: isScalar(v) ? v.value : undefined };
  }
  const need = (k: string) => {
    if (fields[k] === undefined) {
      at(keyNode, `${base}: missing key "${k}"`);
      ok = false;
    }
    return fields[k];
  };
  const digest = need('digest');
  if (digest && !(typeof digest.value === 'string' && DIGEST.test(digest.value))) {
    at(digest.node, `${base}: digest must be sha256:<64 hex digits> or sha512:<128 hex digits>`);
    ok = false;
  }
  const size = need('size');
  if (size && !(typeof size.value === 'number' && Number.isSafeInteger(size.value) && size.value >= 0)) {
    at(size.node, `${base}: size must be a whole number of bytes`);
    ok = false;
  }
  const resolved = need('resolved');
  if (resolved && !(typeof resolved.value === 'string' && WHEN.test(resolved.value) && !Number.isNaN(Date.parse(resolved.value)))) {
    at(resolved.node, `${base}: resolved must be a UTC time such as 2026-01-15T09:30:00Z`);
    ok = false;
  }
  const kind = baseKind(base);
  const url = fields.url;
  if (kind === 'path' && url) {
    at(url.node, `${base} is a local path: it is pinned by digest and size, with no url`);
    ok = false;
  } else if (kind !== 'path' && !url) {
    at(keyNode, `${base}: missing key "url"`);
    ok = false;
  } else if (url) {
    const problem = typeof url.value === 'string' && /^https?:\/\//.test(url.value) ? baseProblem(url.value) : { message: 'url must be an http(s) URL' };
    if (problem) at(url.node, `${base}: ${problem.message.replace(/^image\.base/, 'url')}`);
    else if (kind === 'url' && url.value !== base) at(url.node, `${base}: url must be the image's own URL`);
    else if (kind === 'shorthand' && !isShorthand(base)) at(keyNode, `unknown image shorthand "${base}"`);
    else if (kind === 'shorthand' && !isDistributionUrl(base, url.value as string))
      at(url.node, `${base}: url must be on the distribution's server (rum.lock records no mirror)`);
    else if (kind === 'url' && baseProblem(base)) at(keyNode, `${base}: ${baseProblem(base)!.message}`);
    else {
      if (!ok) return undefined;
      return { url: url.value as string, digest: digest!.value as string, size: size!.value as number, resolved: resolved!.value as string };
    }
    return undefined;
  }
  if (!ok) return undefined;
  return { digest: digest!.value as string, size: size!.value as number, resolved: resolved!.value as string };
}

function scalarText(node: Node | null | undefined): string | undefined {
  return isScalar(node) && (typeof node.value === 'string' || typeof node.value === 'number') ? String(node.value) : undefined;
}

/** The lock's text: entries in code-unit order of their keys, fields in a fixed order, so that
 * the same pins always give the same bytes (and a diff shows only what changed). */
export function formatLock(pins: Pins): string {
  const keys = Object.keys(pins).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const out = [
    '# rum.lock: the exact base images rum.yaml stands for, resolved by rum. Commit it with',
    '# rum.yaml: everyone with this file boots the same bytes. `rum update` resolves them again.',
    `lock: ${LOCK_VERSION}`,
    keys.length === 0 ? 'images: {}' : 'images:',
  ];
  for (const k of keys) {
    const p = pins[k]!;
    out.push(`  ${yamlString(k)}:`);
    if (p.url !== undefined) out.push(`    url: ${yamlString(p.url)}`);
    out.push(`    digest: ${p.digest}`, `    size: ${p.size}`, `    resolved: ${yamlString(p.resolved)}`);
  }
  return `${out.join('\n')}\n`;
}

// Plain when YAML reads it back as this very string; JSON's double quotes (valid YAML) otherwise.
function yamlString(s: string): string {
  const plain = /^[A-Za-z0-9_./][A-Za-z0-9_./:+~=%-]*$/.test(s) && !s.endsWith(':') && !/^(true|false|null|yes|no|on|off|y|n|~)$/i.test(s) && !/^[-+.\d]/.test(s);
  return plain ? s : JSON.stringify(s);
}

export async function writeLock(path: string, pins: Pins): Promise<void> {
  await writeAtomic(path, formatLock(pins));
}
