// Owns: a mount's `ignore:` patterns: their syntax (the .gitignore subset rum.yaml documents),
// what makes one unusable (asked by the schema, so rum.yaml is refused at the pattern's line), and
// matching paths against them. Not: watching (bridge.ts) or where rum.yaml says them.
//
// Matching never builds a RegExp: a pattern from a cloned rum.yaml is untrusted, and a
// backtracking regex made from `**/**/**/**/a` takes seconds per path. Here a path is walked
// name by name with the set of pattern segments it may be at (a Thompson-style simulation), and
// one name is matched against one segment by the greedy star walk: at worst
// segments x names x (segment length x name length) steps, never exponential.

/** relPath uses '/'; isDir undefined: not known, so directory-only patterns do not match. */
export type IgnoreMatcher = (relPath: string, isDir?: boolean) => boolean;

/** Counts a matcher's steps, for tests that bound its work without timing it. */
export interface StepCounter {
  steps: number;
}

/** Why a pattern cannot be used, worded for rum.yaml. */
export interface PatternProblem {
  message: string;
  hint: string;
}

// PATH_MAX: a pattern longer than any path buys nothing and costs every match.
export const MAX_PATTERN_LENGTH = 4096;

// Version control metadata changes on every commit and no watcher in the guest wants it.
const ALWAYS_IGNORED = new Set(['.git', '.hg', '.svn']);

const SLASH = 0x2f;

/** One character of a name: a literal, `?`, a `[...]` class (never '/', as in git), or a `*` run. */
type Atom =
  | { kind: 'char'; cp: number }
  | { kind: 'any' }
  | { kind: 'class'; negate: boolean; ranges: number[] } // [lo, hi, lo, hi, ...], code points
  | { kind: 'star' };

/**
 * What one path segment of a pattern matches: one name (a glob, or a literal for speed), or
 * `**` standing for `min` or more whole names (0 leading or inside, 1 at the end: `dir/**` is
 * what is inside dir, not dir).
 */
type Segment = { kind: 'name'; atoms: Atom[]; literal: string | undefined } | { kind: 'names'; min: 0 | 1 };

interface Rule {
  negate: boolean;
  dirOnly: boolean;
  anchored: boolean; // matched against the path from the mount root, else against each name
  segments: Segment[]; // one when not anchored
}

/** What is wrong with a pattern, or undefined when it is usable (comments and blanks are). */
export function ignorePatternProblem(pattern: string): PatternProblem | undefined {
  if (pattern.length > MAX_PATTERN_LENGTH)
    return {
      message: `ignore pattern is ${pattern.length} characters long, more than the ${MAX_PATTERN_LENGTH} any path can be`,
      hint: 'shorten it: * and ** stand for any run of characters and of directories',
    };
  const problems: PatternProblem[] = [];
  parseRule(pattern, problems);
  return problems[0];
}

/**
 * The .gitignore subset rum.yaml documents: `*`, `?`, `[...]` (`[!...]` or `[^...]` negates),
 * `**` (leading, trailing, middle), a trailing `/` for directories only, a leading or inner `/`
 * to anchor at the mount root, `!` to re-include, `#` comments, `\` to escape. As in git,
 * nothing under an ignored directory is re-included. A pattern ignorePatternProblem refuses
 * still compiles: its backwards range matches nothing.
 */
export function compileIgnore(patterns: readonly string[], counter?: StepCounter): IgnoreMatcher {
  const rules = patterns.flatMap((p) => parseRule(p, []) ?? []);
  const count = counter ?? { steps: 0 };
  return (relPath, isDir) => {
    if (relPath === '' || relPath === '..' || relPath.startsWith('../')) return false; // the root, or outside it
    const names = relPath.split('/');
    if (names.some((n) => ALWAYS_IGNORED.has(n))) return true;
    if (rules.length === 0) return false;
    // Where each anchored rule may be in its segments after the names seen so far.
    const at = rules.map((r) => (r.anchored ? closure(r.segments, [0], count) : undefined));
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const dir = i < names.length - 1 ? true : isDir;
      let ignored = false;
      for (let k = 0; k < rules.length; k++) {
        const r = rules[k]!;
        // An anchored rule reads every name, whether or not it can decide this one.
        const state = r.anchored ? (at[k] = advance(r.segments, at[k]!, name, count)) : undefined;
        if (r.negate !== ignored) continue; // cannot change the outcome so far
        if (r.dirOnly && dir !== true) continue;
        if (state ? state.includes(r.segments.length) : matchName(r.segments[0]!, name, count)) ignored = !r.negate;
      }
      if (ignored) return true;
    }
    return false;
  };
}

// ---------------------------------------------------------------------------------------------
// Matching

/** The segment positions reachable from `from` without reading a name: past `**` that may be empty. */
function closure(segments: Segment[], from: number[], count: StepCounter): number[] {
  const out: number[] = [];
  const seen = new Uint8Array(segments.length + 1);
  for (let j of from) {
    for (; !seen[j]; j++) {
      count.steps++;
      seen[j] = 1;
      out.push(j);
      const s = segments[j];
      if (s?.kind !== 'names' || s.min !== 0) break;
    }
  }
  return out;
}

/** The positions after reading one more name. At most segments + 1 of them: no blow-up. */
function advance(segments: Segment[], at: number[], name: string, count: StepCounter): number[] {
  const next: number[] = [];
  for (const j of at) {
    count.steps++;
    const s = segments[j];
    if (s === undefined) continue; // past the end: a longer path is not this match
    if (s.kind === 'names') {
      next.push(j); // one more name inside the **
      if (s.min === 1) next.push(j + 1); // ...which may be its last
    } else if (matchName(s, name, count)) {
      next.push(j + 1);
    }
  }
  return closure(segments, next, count);
}

/** One name against one segment: the greedy walk, going back only to the last `*`. */
function matchName(s: Segment, name: string, count: StepCounter): boolean {
  if (s.kind === 'names') return true; // an unanchored ** is any name
  if (s.literal !== undefined) {
    count.steps++;
    return s.literal === name;
  }
  const atoms = s.atoms;
  let a = 0;
  let c = 0; // in UTF-16 units, always at a character's start
  let starA = -1;
  let starC = 0;
  while (c < name.length) {
    count.steps++;
    const atom = atoms[a];
    const cp = name.codePointAt(c)!;
    if (atom !== undefined && atom.kind === 'star') {
      starA = a++;
      starC = c;
    } else if (atom !== undefined && matchesChar(atom, cp)) {
      a++;
      c += width(cp);
    } else if (starA >= 0) {
      a = starA + 1; // the last * takes one more character
      starC += width(name.codePointAt(starC)!);
      c = starC;
    } else {
      return false;
    }
  }
  while (atoms[a]?.kind === 'star') a++;
  return a === atoms.length;
}

function matchesChar(atom: Exclude<Atom, { kind: 'star' }>, cp: number): boolean {
  switch (atom.kind) {
    case 'char':
      return atom.cp === cp;
    case 'any':
      return cp !== SLASH;
    case 'class': {
      if (cp === SLASH) return false;
      let inside = false;
      for (let i = 0; i < atom.ranges.length && !inside; i += 2) inside = atom.ranges[i]! <= cp && cp <= atom.ranges[i + 1]!;
      return inside !== atom.negate;
    }
  }
}

// A character outside the Basic Multilingual Plane is one to `?`, as it is to git, and two UTF-16 units.
const width = (cp: number) => (cp > 0xffff ? 2 : 1);

// ---------------------------------------------------------------------------------------------
// Parsing

/** A pattern's rule, or undefined for a blank or a comment. Problems are pushed, not thrown. */
function parseRule(line: string, problems: PatternProblem[]): Rule | undefined {
  let p = trimTrailingBlanks(line);
  if (p === '' || p.startsWith('#')) return undefined;
  let negate = false;
  if (p.startsWith('!')) {
    negate = true;
    p = p.slice(1);
  } else if (p.startsWith('\\!') || p.startsWith('\\#')) {
    p = p.slice(1);
  }
  const dirOnly = p.endsWith('/');
  p = p.replace(/\/+$/, '');
  const anchored = p.includes('/');
  p = p.replace(/^\/+/, '');
  if (p === '') return undefined;
  const parts = splitSegments(p, line, problems);
  const segments: Segment[] = [];
  parts.forEach((atoms, i) => {
    // `**` alone between slashes is whole names; elsewhere (`a**`, `***`) it is one `*`.
    const globstar = anchored && atoms.length === 2 && atoms[0]!.kind === 'star' && atoms[1]!.kind === 'star';
    if (!globstar) {
      const collapsed = atoms.filter((x, k) => !(x.kind === 'star' && atoms[k - 1]?.kind === 'star'));
      const literal = collapsed.every((x) => x.kind === 'char') ? String.fromCodePoint(...collapsed.map((x) => (x as { cp: number }).cp)) : undefined;
      segments.push({ kind: 'name', atoms: collapsed, literal });
      return;
    }
    const min = i === parts.length - 1 ? 1 : 0;
    const prev = segments[segments.length - 1];
    // `**/**` is `**`: a run is one segment, so a path is never tried against each of them.
    if (prev?.kind === 'names') prev.min = Math.max(prev.min, min) as 0 | 1;
    else segments.push({ kind: 'names', min });
  });
  return { negate, dirOnly, anchored, segments };
}

/** Trailing blanks are dropped unless the last is escaped with `\`, as git does. */
function trimTrailingBlanks(line: string): string {
  let end = line.length;
  while (end > 0 && /\s/.test(line[end - 1]!) && line[end - 2] !== '\\') end--;
  return line.slice(0, end);
}

/** The pattern's atoms, split into segments at each '/' (escaped or not). */
function splitSegments(p: string, pattern: string, problems: PatternProblem[]): Atom[][] {
  const chars = [...p];
  const segments: Atom[][] = [[]];
  const push = (atom: Atom) => segments[segments.length - 1]!.push(atom);
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i]!;
    if (ch === '\\' && i + 1 < chars.length) {
      const next = chars[++i]!;
      if (next === '/') segments.push([]);
      else push({ kind: 'char', cp: next.codePointAt(0)! });
    } else if (ch === '/') {
      segments.push([]);
    } else if (ch === '*') {
      push({ kind: 'star' });
    } else if (ch === '?') {
      push({ kind: 'any' });
    } else if (ch === '[') {
      const cls = parseClass(chars, i, pattern, problems);
      if (cls) {
        push(cls.atom);
        i = cls.end;
      } else {
        push({ kind: 'char', cp: 0x5b }); // no closing ]: a literal [
      }
    } else {
      push({ kind: 'char', cp: ch.codePointAt(0)! });
    }
  }
  return segments;
}

/**
 * `[...]` starting at chars[start]: members and `a-z` ranges, `!` or `^` first to negate, a `]`
 * right after that is a member. A backslash inside is itself. Undefined when there is no `]`.
 */
function parseClass(chars: string[], start: number, pattern: string, problems: PatternProblem[]): { atom: Atom; end: number } | undefined {
  let i = start + 1;
  const negate = chars[i] === '!' || chars[i] === '^';
  if (negate) i++;
  const first = i;
  let end = -1;
  for (let k = first + 1; k < chars.length; k++) {
    if (chars[k] === ']') {
      end = k;
      break;
    }
  }
  if (end < 0) return undefined;
  const body = chars.slice(first, end);
  const ranges: number[] = [];
  for (let k = 0; k < body.length; k++) {
    const lo = body[k]!;
    if (body[k + 1] === '-' && k + 2 < body.length) {
      const hi = body[k + 2]!;
      if (lo.codePointAt(0)! > hi.codePointAt(0)!) {
        const at = first + k; // where lo is in chars
        const fixed = [...chars.slice(start, at), hi, '-', lo, ...chars.slice(at + 3, end + 1)].join('');
        problems.push({
          message: `ignore pattern ${quoted(pattern)}: the range ${lo}-${hi} runs backwards, so it matches nothing`,
          hint: `put the lower character first: ${fixed}`,
        });
      }
      ranges.push(lo.codePointAt(0)!, hi.codePointAt(0)!); // backwards: lo > hi, matches nothing
      k += 2;
    } else {
      ranges.push(lo.codePointAt(0)!, lo.codePointAt(0)!);
    }
  }
  return { atom: { kind: 'class', negate, ranges }, end };
}

const quoted = (s: string) => JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}...` : s);
