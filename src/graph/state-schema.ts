// Owns: what a sound state record looks like, and what can be saved from one that is not. Its
// own module, loaded only for a record that state.ts's quick look did not pass: zod shares its
// chunk of the bundle with the config loader (~45 ms to load), which the fast commands, reading
// a sound record every time, must not pay.
import * as z from 'zod/mini';
import type { StateFile } from './state.js';

const NodeRecordSchema = z.object({
  key: z.string(),
  fields: z.record(z.string(), z.string()),
  output: z.string(),
  // Rules' data is an object of small facts (see Output in rule.ts).
  data: z.optional(z.record(z.string(), z.json())),
  time: z.string(),
});

const StateFileSchema = z.object({
  version: z.literal(1),
  generation: z.int().check(z.positive()),
  nodes: z.record(z.string(), NodeRecordSchema),
});

export interface Salvage {
  /** What was wrong, in rum's words: a path into the record and what it expected. Path
   * segments are the file's own keys: escape before printing. */
  problem: string;
  /** Node records given up: all of them, or these. */
  dropped: string[] | 'all';
  /** The --reset count was not readable either, and is assumed to be 1. */
  generationLost: boolean;
}

/** The record in `value` (parsed JSON): as it is when sound; else whatever parts are sound on
 * their own, and what was wrong. */
export function salvageRecord(value: unknown): { record: StateFile; damage?: Salvage } {
  const top = isObject(value) ? value : {};
  const whole = StateFileSchema.safeParse(value);
  if (whole.success) return { record: whole.data as StateFile };

  const issues = whole.error.issues;
  const problem = describeIssue(value, issues[0]!) + (issues.length > 1 ? ` (and ${issues.length - 1} more)` : '');
  const generation = z.int().check(z.positive()).safeParse(top.generation);
  const record: StateFile = { version: 1, generation: generation.success ? generation.data : 1, nodes: {} };
  let dropped: string[] | 'all' = 'all';
  if (isObject(top.nodes)) {
    dropped = [];
    for (const [id, rec] of Object.entries(top.nodes)) {
      const r = NodeRecordSchema.safeParse(rec);
      if (r.success) record.nodes[id] = r.data as StateFile['nodes'][string];
      else dropped.push(id);
    }
  }
  return { record, damage: { problem, dropped, generationLost: !generation.success } };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const EXPECTED: Record<string, string> = { object: 'an object', record: 'an object', string: 'a string', int: 'a whole number', number: 'a number' };

/** e.g. `nodes.overlay.key: missing`, `nodes: expected an object, found null`. */
function describeIssue(value: unknown, issue: z.core.$ZodIssue): string {
  let at: unknown = value;
  for (const seg of issue.path) at = isObject(at) || Array.isArray(at) ? (at as Record<PropertyKey, unknown>)[seg as PropertyKey] : undefined;
  const where = issue.path.length === 0 ? 'the record' : issue.path.map(segment).join('').replace(/^\./, '');
  switch (issue.code) {
    case 'invalid_type':
      return at === undefined ? `${where}: missing` : `${where}: expected ${EXPECTED[issue.expected] ?? issue.expected}, found ${kind(at)}`;
    case 'invalid_value':
      return `${where}: expected ${issue.values.map((v) => JSON.stringify(v)).join(' or ')}, found ${kind(at)}`;
    case 'too_small':
      return `${where}: expected more than ${String(issue.minimum)}`;
    default:
      return `${where}: not a value rum writes`;
  }
}

/** A key from the file, shown readably when it is a plain word, quoted and cut short otherwise. */
function segment(seg: PropertyKey): string {
  if (typeof seg === 'number') return `[${seg}]`;
  const s = String(seg);
  return /^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$/.test(s) ? `.${s}` : `[${JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s)}]`;
}

function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'number') return Number.isInteger(v) ? 'a whole number' : 'a number';
  return typeof v;
}
