// Owns: finding rum.yaml, parsing it with positions, and turning every problem in it into a
// Diagnostic that points at the line, all at once. Not: what a valid field is (schema.ts), checks
// across fields or on the filesystem (rules.ts), or printing (frame.ts, through the CLI).
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import {
  isAlias,
  isCollection,
  isMap,
  isNode,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  visit,
  type Alias,
  type Document,
  type Node,
  type Pair,
} from 'yaml';
import { z } from 'zod';
import { ConfigError, RumError, type Diagnostic } from '../errors.js';
import { readConfig } from './find.js';
import { CONFIG_FILE } from './find.js';
export { CONFIG_FILE, findConfig } from './find.js';
import { afterAtTop, inherit, isSettings, machineBlocks, NO_IMAGE_HINT, originOf, SaidOnce } from './machines.js';
import { checkRules, isSessionUri, type ConfigPath, type Locate, type Place, type Problem } from './rules.js';
import { RumYamlSchema, type Config, type Project } from './schema.js';


// A rum.yaml has no use for more; a "billion laughs" document needs far more to do harm.
const MAX_ALIASES = 50;

/**
 * Read, parse and check rum.yaml, and resolve its defaults. Throws ConfigError with every problem
 * found (syntax first: when the YAML itself is broken, nothing else in it can be trusted).
 */
export async function loadProject(opts: { file?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Project> {
  const { file, text } = await readConfig(opts);
  return parseProject(text, file, opts.env ?? process.env);
}

/**
 * The VM name a directory gives when rum.yaml sets none: a DNS label, or undefined when nothing
 * usable remains (`___`, `/`).
 */
export function vmNameFromDir(dirName: string): string | undefined {
  const label = dirName
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '') // café -> cafe
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return label === '' ? undefined : label;
}

export async function parseProject(text: string, file: string, env: NodeJS.ProcessEnv): Promise<Project> {
  const lines = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter: lines,
    uniqueKeys: true,
    prettyErrors: false, // we draw our own frame, from the position
    logLevel: 'error', // no console.warn from inside the library
  });
  const src = new Source(file, text, doc, lines);

  // Broken YAML: its structure is a guess, so schema messages about it would mislead.
  const syntax = syntaxProblems(src);
  if (syntax.length > 0) throw new ConfigError(sorted(syntax));

  // Well-formed YAML with problems of its own: reported along with the schema's.
  // Those that leave no sensible object to check stop here.
  const structure = duplicateKeys(src);
  const unusable = [...collectionKeys(src), ...unknownAliases(src)];
  if (unusable.length > 0) throw new ConfigError(sorted([...structure, ...unusable]));
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (err) {
    if (!(err instanceof ReferenceError && /alias/i.test(err.message))) throw err;
    throw new ConfigError(sorted([...structure, aliasBomb(src)]));
  }

  const dir = dirname(file);
  const problems = [...structure];
  const top = (p: Problem) => src.diagnostic(src.locate(p.path, p.part), p.message, p.hint);
  const multi = isSettings(data) && Object.hasOwn(data, 'machines');
  if (isSettings(data) && Object.hasOwn(data, 'after')) {
    problems.push(top(afterAtTop(multi)));
    const { after: _, ...rest } = data;
    data = rest;
  }
  if (!isSettings(data) || !multi) {
    // One VM, named like the project: the file as it was before machines.
    const vm = await checkVm(data, { dir, env, src, locate: src.locate });
    if (vm.config?.name === '') problems.push(unnamed(file, dir));
    problems.push(...vm.problems.map(top));
    if (problems.length > 0 || !vm.config) throw new ConfigError(sorted(problems));
    return { name: vm.config.name, file, dir, single: true, machines: [vm.config] };
  }

  const { name: given, machines: declared, ...defaults } = data;
  const named = RumYamlSchema.pick({ name: true }).safeParse({ name: given }, { reportInput: true, error: issueMessage });
  if (!named.success) problems.push(...named.error.issues.flatMap(issueProblems).map(top));
  const name = named.success ? (named.data.name ?? vmNameFromDir(basename(dir))) : undefined;
  if (named.success && name === undefined) problems.push(unnamed(file, dir));
  const { blocks, problems: structural } = machineBlocks(declared, machineOrder(src));
  problems.push(...structural.map(top));

  const machines: Config[] = [];
  const found = new SaidOnce();
  for (const block of blocks) {
    if (block.own === undefined) continue;
    const own = block.own;
    const origin = (path: ConfigPath) => originOf(path, defaults, own, block.name);
    const locate: Locate = (path, part) => {
      const o = origin(path);
      return src.locate(o.path, o.part ?? part);
    };
    const vmName = name === undefined ? undefined : `${name}-${block.name}`;
    if (vmName !== undefined && vmName.length > 63)
      problems.push(top({ path: ['machines', block.name], part: 'key', message: `VM name ${vmName} is ${vmName.length} characters: a DNS label holds at most 63`,
        hint: `the VM name is <project>-<machine>: shorten the machine's name, or the project's (name: at the top level)` }));
    const vm = await checkVm(inherit(defaults, own), { dir, env, src, locate, name: vmName ?? '', hostname: block.name, machine: block.name });
    for (const p of vm.problems) {
      const o = origin(p.path);
      const hint = o.part === 'key' && p.path[0] === 'image' ? NO_IMAGE_HINT : p.hint; // at the machine's key: neither has one
      found.add(top({ ...p, path: o.path, part: o.part ?? p.part, ...(hint === undefined ? {} : { hint }) }), o.inherited ? block.name : undefined);
    }
    if (vm.config) machines.push({ ...vm.config, machine: block.name, after: block.after });
  }
  problems.push(...found.diagnostics());
  if (problems.length > 0 || name === undefined) throw new ConfigError(sorted(problems));
  return { name, file, dir, single: false, machines };
}

/** One VM's settings, checked: the schema's problems, else the resolved config and the rules'
 * problems. Paths are into `data`; `locate` only gives the lines that messages mention. */
async function checkVm(
  data: unknown,
  at: { dir: string; env: NodeJS.ProcessEnv; src: Source; locate: Locate; name?: string; hostname?: string; machine?: string },
): Promise<{ config?: Config; problems: Problem[] }> {
  const parsed = RumYamlSchema.safeParse(data, { reportInput: true, error: issueMessage });
  if (!parsed.success) {
    // A value of the wrong type also fails the checks meant for the right one: say it once.
    const mistyped = new Set(parsed.error.issues.filter((i) => i.code === 'invalid_type').map((i) => pathText(i.path)));
    const issues = parsed.error.issues.filter((i) => i.code === 'invalid_type' || !mistyped.has(pathText(i.path)));
    return { problems: issues.flatMap(issueProblems) };
  }
  const raw = parsed.data;
  const name = at.name ?? raw.name ?? vmNameFromDir(basename(at.dir)) ?? ''; // '': unnamed(), by the caller
  const config: Config = {
    ...raw,
    name,
    machine: at.machine ?? name,
    after: [],
    network: {
      ...raw.network,
      mode: raw.network.mode ?? (isSessionUri(raw.libvirt.uri) ? 'user' : 'nat'),
      hostname: raw.network.hostname ?? at.hostname ?? name,
    },
    mounts: raw.mounts.map((m) => ({ ...m, hostPath: resolve(at.dir, expandHome(m.source, at.env)) })),
    file: at.src.file,
    dir: at.dir,
  };
  return { config, problems: await checkRules(config, at.locate) };
}

/** The project has no name:, and its directory's name gives none. Not about any line of the file. */
function unnamed(file: string, dir: string): Diagnostic {
  return {
    file,
    line: 1,
    col: 1,
    message: `the directory name ${JSON.stringify(basename(dir))} gives no usable VM name`,
    hint: 'set one in rum.yaml, e.g. name: myproject (lowercase letters, digits and -)',
  };
}

/** The keys of `machines:` as the file writes them. */
function machineOrder(src: Source): string[] {
  const node = src.deref(src.doc.get('machines', true));
  return isMap(node) ? node.items.map((pair) => keyText(pair.key)) : [];
}
/** rum.yaml's text, its parsed document, and the way from a config path to a line. */
class Source {
  constructor(
    readonly file: string,
    readonly text: string,
    readonly doc: Document.Parsed,
    readonly lines: LineCounter,
  ) {}

  /** The place of a text range. A range past the last line is moved to the end of the text. */
  place(start: number, end?: number): Place {
    const last = this.text.trimEnd().length;
    if (start > last) start = last;
    const { line, col } = this.lines.linePos(start);
    const source = this.lineText(line);
    const place: Place = { line, col, source };
    if (end !== undefined && end > start) place.length = Math.max(1, Math.min(end - start, source.length - (col - 1)));
    return place;
  }

  diagnostic(place: Place, message: string, hint?: string): Diagnostic {
    return { file: this.file, ...place, message, ...(hint === undefined ? {} : { hint }) };
  }

  /** A node's place: scalars and flow collections underlined whole (up to the line's end). */
  nodePlace(node: Node): Place {
    const [start, end] = node.range ?? [0, 0];
    return this.place(start, isCollection(node) && !node.flow ? undefined : end);
  }

  locate: Locate = (path, part = 'value') => {
    let node: unknown = this.doc.contents;
    let key: Node | undefined; // the key whose value `node` is; none for list items and the top
    // Where the deepest thing found is: its key when it has one (a missing key is pointed at
    // through the mapping that lacks it), else the node itself.
    const found = () => (key ? this.nodePlace(key) : isNode(node) && !isEmpty(node) ? this.nodePlace(node) : this.start());
    for (const seg of path) {
      node = this.deref(node);
      if (isMap(node)) {
        const pair = lastPair(node.items, String(seg));
        if (!pair) return found();
        key = isNode(pair.key) ? pair.key : undefined;
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number' && node.items[seg] !== undefined) {
        key = undefined;
        node = node.items[seg];
      } else {
        return found();
      }
    }
    if (part === 'key' && key) return this.nodePlace(key);
    // The value's own text; an empty one (`resources:`) has none, so its key stands for it.
    return isNode(node) && !isEmpty(node) ? this.nodePlace(node) : found();
  };

  start(): Place {
    const c = this.doc.contents;
    return c && c.range ? this.place(c.range[0]) : { line: 1, col: 1, source: this.lineText(1) };
  }

  lineText(line: number): string {
    const start = this.lines.lineStarts[line - 1] ?? this.text.length;
    const end = this.text.indexOf('\n', start);
    return this.text.slice(start, end < 0 ? undefined : end).replace(/\r$/, '');
  }

  deref(node: unknown): unknown {
    return isAlias(node) ? node.resolve(this.doc) : node;
  }
}

// An implicit null (`resources:` and nothing): it has no text of its own to point at.
const isEmpty = (node: Node) => isScalar(node) && node.value === null && !!node.range && node.range[0] === node.range[1];

/** The pair for `key`; the last one, as toJS keeps the last of duplicates. */
function lastPair(items: Pair[], key: string): Pair | undefined {
  for (let i = items.length - 1; i >= 0; i--) if (keyText(items[i]!.key) === key) return items[i];
  return undefined;
}

/** A key as it becomes a property name in toJS. */
function keyText(key: unknown): string {
  return isScalar(key) ? String(key.value ?? '') : String(key);
}

// ---------------------------------------------------------------------------------------------
// YAML-level problems

const yamlHints: Partial<Record<string, string>> = {
  TAB_AS_INDENT: 'YAML indents with spaces only: replace the tab with spaces',
  MULTIPLE_DOCS: 'remove the --- line and whatever follows it',
  BLOCK_AS_IMPLICIT_KEY: 'a value that contains ": " must be quoted, e.g. key: "a: b"',
  BAD_DQ_ESCAPE: 'in double quotes a backslash starts an escape: write \\\\ for one, or use single quotes',
  BAD_INDENT: 'check the indentation: keys of one mapping start in the same column',
};
const flowHint = 'close every [ and { before the next key';

function syntaxProblems(src: Source): Diagnostic[] {
  const found: Diagnostic[] = [];
  const seenLines = new Set<number>();
  const problems = [
    ...src.doc.errors.filter((e) => e.code !== 'DUPLICATE_KEY'), // duplicateKeys() words these
    ...src.doc.warnings.filter((w) => w.code === 'TAG_RESOLVE_FAILED'), // else the value is silently a string
  ];
  for (const e of problems) {
    const place = src.place(e.pos[0], e.pos[1]);
    // One YAML mistake often gives several errors on one line; the first is the useful one.
    if (seenLines.has(place.line)) continue;
    seenLines.add(place.line);
    const message =
      e.code === 'TAB_AS_INDENT' ? 'tab character used for indentation'
      : e.code === 'MULTIPLE_DOCS' ? `${CONFIG_FILE} must hold one YAML document; a second one starts here`
      : e.code === 'TAG_RESOLVE_FAILED' ? `unsupported YAML tag: ${e.message.replace(/^Unresolved tag: /, '')}`
      : `invalid YAML: ${lowerFirst(e.message)}`;
    found.push(src.diagnostic(place, message, /^flow /i.test(e.message) ? flowHint : yamlHints[e.code]));
  }
  return found;
}

function duplicateKeys(src: Source): Diagnostic[] {
  const found: Diagnostic[] = [];
  visit(src.doc, {
    Map(_, map) {
      const first = new Map<string, Node>();
      for (const pair of map.items) {
        if (!isScalar(pair.key)) continue;
        const k = keyText(pair.key);
        const earlier = first.get(k);
        if (!earlier) first.set(k, pair.key);
        else
          found.push(
            src.diagnostic(src.nodePlace(pair.key), `duplicate key ${JSON.stringify(k)}`,
              `it is also on line ${src.nodePlace(earlier).line}: keep one`),
          );
      }
    },
  });
  return found;
}

function collectionKeys(src: Source): Diagnostic[] {
  const found: Diagnostic[] = [];
  visit(src.doc, {
    Pair(_, pair) {
      if (isCollection(pair.key) || isAlias(pair.key))
        found.push(src.diagnostic(src.nodePlace(pair.key), 'a key must be a plain word, not a list, mapping or alias'));
    },
  });
  return found;
}

function unknownAliases(src: Source): Diagnostic[] {
  const found: Diagnostic[] = [];
  visit(src.doc, {
    Alias(_, alias) {
      if (alias.resolve(src.doc) === undefined)
        found.push(src.diagnostic(src.nodePlace(alias), `unknown alias *${alias.source}`, `define &${alias.source} before it is used`));
    },
  });
  return found;
}

/** toJS gave up expanding aliases: point at the first alias, the start of the expansion. */
function aliasBomb(src: Source): Diagnostic {
  let first: Alias | undefined;
  visit(src.doc, {
    Alias(_, alias) {
      first = alias;
      return visit.BREAK;
    },
  });
  return src.diagnostic(
    first ? src.nodePlace(first) : src.start(),
    `too many YAML aliases: expanding them would exceed ${MAX_ALIASES} (this looks like a "billion laughs" document)`,
    'write the values out instead of nesting aliases',
  );
}

// ---------------------------------------------------------------------------------------------
// Schema problems

/** Our wording for zod's own issues; a message the schema sets itself wins over this. */
const issueMessage: z.core.$ZodErrorMap = (iss) => {
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

function issueProblems(issue: z.core.$ZodIssue): Problem[] {
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
function pathText(path: ConfigPath): string {
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

const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);

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

// ---------------------------------------------------------------------------------------------

function sorted(diagnostics: Diagnostic[]): Diagnostic[] {
  return [...diagnostics].sort((a, b) => a.line - b.line || a.col - b.col);
}

/** `~` and `~/x` in a mount source mean the user's home, as in a shell. */
function expandHome(p: string, env: NodeJS.ProcessEnv): string {
  if (p !== '~' && !p.startsWith('~/')) return p;
  return join(env.HOME && env.HOME.startsWith('/') ? env.HOME : homedir(), p.slice(1));
}

