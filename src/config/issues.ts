// Owns: reading zod's issues about rum.yaml into problems at config paths, and their words: our
// wording for zod's own issues, and hints (the key you meant, the value as it should be written,
// where a misplaced key belongs). Not: where a path is in the file (source.ts) or what the schema
// allows (schema.ts: this only reads it).
import type { z } from 'zod';
import { CONFIG_FILE } from './find.js';
import type { ConfigPath, Problem } from './rules.js';
import { RumYamlSchema } from './schema.js';

/** Our wording for zod's own issues; a message the schema sets itself wins over this. */
export const issueMessage: z.core.$ZodErrorMap = (iss) => {
  const path = iss.path ?? [];
  const where = pathText(path);
  switch (iss.code) {
    case 'invalid_type': {
      const expected = expectedText(iss.expected);
      if (path.length === 0 && iss.input == null) return `${CONFIG_FILE} is empty`;
      if (iss.input === undefined) return `missing required key ${JSON.stringify(String(path[path.length - 1]))}${inText(path.slice(0, -1))}`;
      if (path.length === 0) return `${CONFIG_FILE} must be a mapping of keys such as image:, not ${valueText(iss.input)}`;
      if (iss.input === null) return `${where} has no value: expected ${expected}`;
      return `${where} must be ${expected}, not ${valueText(iss.input)}`;
    }
    case 'too_small':
    case 'too_big': {
      const bound = iss.code === 'too_small' ? iss.minimum : iss.maximum;
      if (iss.origin === 'string' && iss.code === 'too_small' && Number(bound) <= 1) return `${where} may not be empty`;
      const side = iss.code === 'too_small' ? 'at least' : 'at most';
      const unit = iss.origin === 'string' ? ' characters' : iss.origin === 'array' ? ' items' : '';
      return `${where} must be ${side} ${String(bound)}${unit}, not ${valueText(iss.input, false)}`;
    }
    case 'invalid_value':
      return `${where} must be one of ${iss.values.map((v) => String(v)).join(', ')}, not ${valueText(iss.input, false)}`;
    case 'invalid_format':
      return `${where} is not a valid ${iss.format}: ${valueText(iss.input, false)}`;
    default:
      return undefined;
  }
};

export function issueProblems(issue: z.core.$ZodIssue): Problem[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => ({
      path: [...issue.path, key],
      part: 'key',
      message: `unknown key ${JSON.stringify(key)}${inText(issue.path)}`,
      ...optional('hint', unknownKeyHint(issue.path, key)),
    }));
  }
  return [{ path: issue.path, message: issue.message, ...optional('hint', issueHint(issue)) }];
}

const optional = <K extends string, V>(k: K, v: V | undefined) => (v === undefined ? {} : { [k]: v }) as Partial<Record<K, V>>;

function issueHint(issue: z.core.$ZodIssue): string | undefined {
  const input = (issue as { input?: unknown }).input;
  const path = issue.path;
  // A check that knows the fix says it with its issue (schema.ts, one-line.ts).
  if (issue.code === 'custom' && typeof issue.params?.hint === 'string') return issue.params.hint;
  if (issue.code === 'invalid_value' && typeof input === 'string') {
    const near = closest(input, issue.values.map(String));
    return near === undefined ? undefined : `did you mean ${JSON.stringify(near)}?`;
  }
  if (issue.code !== 'invalid_type') return undefined;
  if (path.length === 0 && input == null) return 'start with: image: {base: debian-12} (or run `rum init`)';
  if (input === undefined && path.length === 1 && path[0] === 'image') return 'every rum.yaml needs one, e.g. image: {base: debian-12}';
  if (input === null && issue.expected === 'object') return `give ${pathText(path)} keys, or remove the line`;
  if (typeof input === 'string' && (issue.expected === 'number' || issue.expected === 'int') && /^\s*-?\d+(\.\d+)?\s*$/.test(input))
    return `remove the quotes: ${String(path[path.length - 1])}: ${input.trim()}`;
  if (typeof input === 'string' && issue.expected === 'boolean' && /^(y|yes|n|no|on|off|true|false)$/i.test(input))
    return 'write true or false (YAML 1.2 reads yes, no, on and off as strings)';
  return undefined;
}

function unknownKeyHint(path: ConfigPath, key: string): string | undefined {
  if (path.length === 0 && key === 'machines') return 'machines do not nest: declare them all under the top-level machines:';
  // At the top, also the keys that only a file with machines has (a machine's own: after).
  const allowed = [...Object.keys(shapeAt(RumYamlSchema, path) ?? {}), ...(path.length === 0 ? ['machines'] : [])];
  const near = closest(key, path.length === 0 ? [...allowed, 'after'] : allowed);
  if (near !== undefined) return `did you mean ${JSON.stringify(near)}?`;
  // Right key, wrong place: usually indentation.
  const elsewhere = objectPaths(RumYamlSchema).find((p) => p.keys.includes(key) && pathText(p.path) !== pathText(stripIndices(path)));
  if (elsewhere) {
    return elsewhere.path.length === 0
      ? `${JSON.stringify(key)} is a top-level key: check its indentation`
      : `${JSON.stringify(key)} belongs under ${pathText(elsewhere.path)} (check the indentation)`;
  }
  return allowed.length > 0 ? `${path.length === 0 ? 'top-level keys' : `keys of ${pathText(path)}`}: ${allowed.join(', ')}` : undefined;
}

// ---------------------------------------------------------------------------------------------
// Reading the schema: which keys an object allows

type AnyZod = z.core.$ZodType;
interface DefLike {
  type: string;
  innerType?: AnyZod;
  in?: AnyZod;
  element?: AnyZod;
  shape?: Record<string, AnyZod>;
}
const defOf = (s: AnyZod) => s._zod.def as unknown as DefLike;

/** Through optional, default, prefault and transforms to the schema that does the checking. */
function unwrap(s: AnyZod): AnyZod {
  for (;;) {
    const def = defOf(s);
    if (def.innerType) s = def.innerType;
    else if (def.type === 'pipe' && def.in) s = def.in;
    else return s;
  }
}

function shapeAt(schema: AnyZod, path: ConfigPath): Record<string, AnyZod> | undefined {
  let s = unwrap(schema);
  for (const seg of path) {
    const def = defOf(s);
    const next = def.type === 'object' ? def.shape?.[String(seg)] : def.type === 'array' ? def.element : undefined;
    if (!next) return undefined;
    s = unwrap(next);
  }
  return defOf(s).shape;
}

/** Every object in the schema, with its path (arrays as `[]`-less paths: `mounts`). */
function objectPaths(schema: AnyZod, path: string[] = []): { path: string[]; keys: string[] }[] {
  const def = defOf(unwrap(schema));
  if (def.type === 'array' && def.element) return objectPaths(def.element, path);
  if (def.type !== 'object' || !def.shape) return [];
  return [{ path, keys: Object.keys(def.shape) }, ...Object.entries(def.shape).flatMap(([k, v]) => objectPaths(v, [...path, k]))];
}

const stripIndices = (path: ConfigPath) => path.filter((p) => typeof p !== 'number');

// ---------------------------------------------------------------------------------------------
// Words

/** `mounts[0].target` */
export function pathText(path: ConfigPath): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
}

const inText = (path: ConfigPath) => (path.length === 0 ? '' : ` in ${pathText(path)}`);

function expectedText(expected: string): string {
  const words: Record<string, string> = {
    number: 'a number',
    int: 'a whole number',
    boolean: 'true or false',
    string: 'a string',
    object: 'a mapping (key: value lines)',
    array: 'a list (- item lines)',
  };
  return words[expected] ?? expected;
}

/** `typed`: say what kind of value it is, for when the kind is what is wrong. */
function valueText(v: unknown, typed = true): string {
  if (v === null || v === undefined) return 'empty';
  if (typeof v === 'string') return `${typed ? 'the string ' : ''}${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)}`;
  if (typeof v === 'number') return String(v);
  if (typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Uint8Array) return 'binary data';
  if (typeof v === 'object') return 'a mapping';
  return typeof v;
}

/** The allowed word nearest `word`, if it is near enough to be a typo. */
function closest(word: string, allowed: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(w.length / 3)) + 1;
  for (const candidate of allowed) {
    const d = editDistance(w, candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

/** Optimal string alignment distance: Levenshtein plus a swap of two neighbours (memroy). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
