// Owns: what `machines:` means in rum.yaml: what a machine's block may hold, how it inherits the
// top-level keys (mappings merged key by key, anything else replaced whole), where in the file
// each merged value was written, and the `after:` order between machines. Not: what a valid VM
// is (schema.ts, rules.ts), or reading and locating text (load.ts hands us paths, we hand back paths).
import type { Diagnostic } from '../errors.js';
import type { ConfigPath, Problem } from './rules.js';
import { DNS_LABEL } from './schema.js';

export type Settings = Record<string, unknown>;

export interface MachineBlock {
  name: string;
  /** Its own settings, without `after:`; undefined when the block is not a mapping (reported). */
  own: Settings | undefined;
  /** The machines of this file it starts after, each once; the bad entries are reported. */
  after: string[];
}

/** The value at `path` of one machine's merged settings: where it was written, and whether it was
 * inherited from the top level (then several machines may report the same place). */
export interface Origin {
  path: ConfigPath;
  part?: 'key';
  inherited: boolean;
}

export const isSettings = (v: unknown): v is Settings => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);

/** `after:` at the top level: it orders machines, so it only means something inside one. */
export function afterAtTop(multi: boolean): Problem {
  return {
    path: ['after'],
    part: 'key',
    message: 'after: only makes sense inside a machine, under machines:',
    hint: multi
      ? 'move it under the machine that must wait, e.g. machines: {web: {after: [db]}}'
      : 'declare machines: and give the one that must wait after: [the others]',
  };
}

/**
 * The machine blocks of `machines` (a file's `machines:` value) in file order (`order`: the keys
 * as the YAML writes them; a JS object puts `1` before `a`), and every problem in their names,
 * their shape and their `after:` lists (at file paths).
 */
export function machineBlocks(machines: unknown, order: readonly string[]): { blocks: MachineBlock[]; problems: Problem[] } {
  const problems: Problem[] = [];
  if (machines !== null && !isSettings(machines)) {
    problems.push({ path: ['machines'], message: `machines must be a mapping of machine names to their settings, not ${kindOf(machines)}`,
      hint: 'e.g. machines: {db: {}, web: {after: [db]}}' });
    return { blocks: [], problems };
  }
  const names = machines === null ? [] : [...order.filter((k) => Object.hasOwn(machines, k)),
    ...Object.keys(machines).filter((k) => !order.includes(k))];
  if (names.length === 0) {
    problems.push({ path: ['machines'], part: 'key', message: 'machines: is empty: declare at least one machine, or remove machines:',
      hint: 'e.g. machines: {web: {}}; without machines: the file is one VM' });
    return { blocks: [], problems };
  }
  const blocks = names.map((name): MachineBlock & { rawAfter: unknown; edges: Edge[] } => {
    const at = (...path: ConfigPath) => ['machines', name, ...path];
    if (!DNS_LABEL.test(name))
      problems.push({ path: at(), part: 'key', message: `machine name ${JSON.stringify(name)} must be a DNS label: lowercase letters, digits and '-', 1-63 characters, not starting or ending with '-'`,
        hint: 'it becomes part of the VM name and the guest\'s hostname' });
    const block = (machines as Settings)[name];
    if (block !== null && !isSettings(block)) {
      problems.push({ path: at(), message: `machines.${name} must be a mapping of settings, not ${kindOf(block)}`,
        hint: 'indent its settings under it, or leave it empty to inherit every top-level key' });
      return { name, own: undefined, after: [], rawAfter: [], edges: [] };
    }
    const { name: _, after, ...own } = block ?? {};
    if (Object.hasOwn(block ?? {}, 'name'))
      problems.push({ path: at('name'), part: 'key', message: `a machine has no name: key: its key under machines:, ${name}, is its name`,
        hint: 'remove it; the VM is named after the project and the machine (name: at the top level names the project)' });
    return { name, own, after: [], rawAfter: Object.hasOwn(block ?? {}, 'after') ? after : [], edges: [] };
  });
  for (const b of blocks) {
    b.edges = afterEdges(b.name, b.rawAfter, names, problems);
    b.after = b.edges.map((e) => e.to);
  }
  problems.push(...cycles(blocks));
  return { blocks: blocks.map(({ name, own, after }) => ({ name, own, after })), problems };
}

/** `from` starts after `to`, as entry `index` of from's after: says. */
interface Edge {
  to: string;
  index: number;
}

/** A machine's `after:` entries that name another machine, each once; a problem for each other one. */
function afterEdges(machine: string, after: unknown, names: string[], problems: Problem[]): Edge[] {
  const at = (...path: ConfigPath) => ['machines', machine, 'after', ...path];
  if (!Array.isArray(after)) {
    problems.push({ path: at(), message: after === null ? 'after has no value: expected a list of machine names' : `after must be a list of machine names, not ${kindOf(after)}`,
      hint: `e.g. after: [${names.find((n) => n !== machine) ?? 'db'}]` });
    return [];
  }
  const found: Edge[] = [];
  after.forEach((item: unknown, i) => {
    const others = names.filter((n) => n !== machine);
    const choices = others.length === 0 ? 'this file declares no other machine' : `machines of this file: ${others.join(', ')}`;
    if (typeof item !== 'string') problems.push({ path: at(i), message: `after[${i}] must be a machine name, not ${kindOf(item)}`, hint: choices });
    else if (item === machine) problems.push({ path: at(i), message: `machine ${machine} cannot start after itself`, hint: 'remove it from after' });
    else if (!names.includes(item)) problems.push({ path: at(i), message: `after names ${JSON.stringify(item)}, which is not a machine of this file`, hint: choices });
    else if (found.some((e) => e.to === item)) problems.push({ path: at(i), message: `${item} is already in after`, hint: 'list each machine once' });
    else found.push({ to: item, index: i });
  });
  return found;
}

/** Each cycle of `after:`, at the entry that closes it, found in file order. */
function cycles(blocks: readonly { name: string; edges: Edge[] }[]): Problem[] {
  const edgesOf = new Map(blocks.map((b) => [b.name, b.edges]));
  const done = new Set<string>();
  const stack: string[] = [];
  const found: Problem[] = [];
  const visit = (m: string) => {
    stack.push(m);
    for (const { to: next, index } of edgesOf.get(m) ?? []) {
      const on = stack.indexOf(next);
      if (on >= 0) {
        // m -> next closes it: name it from m, the machine whose after: entry this is.
        const loop = [m, ...stack.slice(on, -1), m];
        found.push({ path: ['machines', m, 'after', index], message: `after: makes a cycle: ${loop.join(' -> ')}`,
          hint: 'a machine cannot wait for one that waits for it: remove one of these after: entries' });
      } else if (!done.has(next)) visit(next);
    }
    stack.pop();
    done.add(m);
  };
  for (const b of blocks) if (!done.has(b.name)) visit(b.name);
  return found;
}

/** One machine's settings: the defaults with its own on top. Mappings merge key by key, at every
 * depth; anything else (a list, a scalar, an empty value) replaces the default whole. */
export function inherit(defaults: Settings, own: Settings): Settings {
  const out: Settings = {};
  for (const [k, v] of Object.entries(defaults)) set(out, k, v);
  for (const [k, v] of Object.entries(own)) {
    const d = out[k];
    set(out, k, isSettings(d) && isSettings(v) && Object.hasOwn(out, k) ? inherit(d, v) : v);
  }
  return out;
}

// `__proto__` is a key like any other in YAML: define it, never set the object's prototype.
const set = (o: Settings, k: string, v: unknown) => Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });

/**
 * Where the value at `path` of machine `name`'s merged settings was written: in its own block,
 * else in the defaults. A value neither has (a missing required key) is the machine's: under the
 * deepest mapping of its own on the way, else at its key.
 */
export function originOf(path: ConfigPath, defaults: Settings, own: Settings, name: string): Origin {
  const mine: Origin = { path: ['machines', name, ...path], inherited: false };
  let d: unknown = defaults;
  let o: unknown = own;
  for (const [i, seg] of path.entries()) {
    const has = (v: unknown) => isSettings(v) && Object.hasOwn(v, String(seg));
    if (!has(o)) {
      if (has(d)) return { path, inherited: true };
      return i === 0 ? { path: ['machines', name], part: 'key', inherited: false } : mine;
    }
    o = (o as Settings)[String(seg)];
    d = has(d) ? (d as Settings)[String(seg)] : undefined;
    if (!isSettings(o) || !isSettings(d)) return mine; // its own replaces the default whole
  }
  return mine;
}

export const NO_IMAGE_HINT = 'set image: at the top level, for every machine, or in this machine, e.g. image: {base: debian-12}';

/** Each problem of every machine said once. One in settings inherited from the top level is met by
 * each machine that inherits them: it names them, `(for machines db and web)`. */
export class SaidOnce {
  private readonly found = new Map<string, { d: Diagnostic; machines: string[] }>();

  /** `inheritedBy`: the machine that met it in inherited settings; undefined: in its own block. */
  add(d: Diagnostic, inheritedBy: string | undefined): void {
    const key = `${d.line}:${d.col}:${d.message}`;
    const seen = this.found.get(key);
    if (!seen) this.found.set(key, { d, machines: inheritedBy === undefined ? [] : [inheritedBy] });
    else if (inheritedBy !== undefined) seen.machines.push(inheritedBy);
  }

  diagnostics(): Diagnostic[] {
    return [...this.found.values()].map(({ d, machines: m }) =>
      m.length === 0 ? d : { ...d, message: `${d.message} (for machine${m.length > 1 ? 's' : ''} ${listText(m)})` });
  }
}

/** `a`, `a and b`, `a, b and c` */
export const listText = (items: string[]) => (items.length < 2 ? items.join('') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)!}`);

/** `a list`, `the string "x"`: what a value is, for when its kind is what is wrong. */
function kindOf(v: unknown): string {
  if (v === null || v === undefined) return 'empty';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)}`;
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}
