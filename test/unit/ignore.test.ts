// src/mounts/ignore.ts: ignore: patterns mean what a RegExp translation of the documented
// .gitignore subset means, cost a bounded number of steps however they are written, and the
// ones that cannot mean anything are refused with a problem the schema shows at their line.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileIgnore, ignorePatternProblem, MAX_PATTERN_LENGTH, type StepCounter } from '../../src/mounts/ignore.js';

test('backwards ranges are refused, with the class written the right way round', () => {
  const cases: [string, string, string][] = [
    ['[z-a]', 'z-a', '[a-z]'],
    ['*.[!9-0]', '9-0', '[!0-9]'],
    ['build/[^Z-A]x', 'Z-A', '[^A-Z]'],
    ['x[a-cz-q]y', 'z-q', '[a-cq-z]'],
    ['!docs/**/[b-a]', 'b-a', '[a-b]'],
    ['[é-a]', 'é-a', '[a-é]'],
  ];
  for (const [pattern, range, fixed] of cases) {
    const p = ignorePatternProblem(pattern);
    assert.ok(p, pattern);
    assert.match(p.message, new RegExp(`the range ${range} runs backwards`), pattern);
    assert.ok(p.hint.endsWith(fixed), `${pattern}: ${p.hint}`);
    // The bridge never throws on one that slipped through: the class matches nothing.
    assert.equal(compileIgnore([pattern.replace(/^!/, '')])('z', false), false);
  }
});

test('usable patterns have no problem, whatever they look like', () => {
  const fine = [
    '', '# comment', '*.log', '!keep.log', 'build/', '/top.txt', 'docs/**/*.tmp', '**', '**/', '/**', 'a/**/**/b',
    '**/**/**/**/**/**/**/**/**/**/a', '[a-a]', '[-]', '[a-]', '[]]', '[!]x]', '[', 'x[', '[z', '\\[z-a]', '\\', 'a\\ ',
    '#emacs#', '{x,y}', '&anchor-looking', ' leading space', 'tab\there', '日本[語-語]', '[😀-😃]',
  ];
  for (const p of fine) assert.equal(ignorePatternProblem(p), undefined, JSON.stringify(p));
  assert.equal(ignorePatternProblem('a'.repeat(MAX_PATTERN_LENGTH)), undefined);
  assert.match(ignorePatternProblem('*'.repeat(MAX_PATTERN_LENGTH + 1))!.message, /4097 characters long, more than the 4096/);
});

test('semantics beyond the bridge test: classes, escapes, ** runs, characters outside the BMP', () => {
  const cases: [string[], string, boolean | undefined, boolean][] = [
    [['d/a[!x]b'], 'd/a/b', false, false], // a class never matches '/', as in git
    [['d/a[+-0]b'], 'd/a/b', false, false], // ...not even through a range that spans it
    [['[]x]'], ']', false, true], // ']' first is a member
    [['[]x]'], 'x', false, true],
    [['[!]x]'], 'y', false, true],
    [['[!]x]'], ']', false, false],
    [['[^a-c]'], 'b', false, false],
    [['[^a-c]'], 'd', false, true],
    [['x[yz'], 'x[yz', false, true], // no closing ]: a literal [
    [['\\*'], '*', false, true],
    [['\\*'], 'a', false, false],
    [['\\!x'], '!x', false, true],
    [['a\\ '], 'a ', false, true], // an escaped trailing blank stays
    [['a/**/**/b'], 'a/b', false, true],
    [['a/**/**/b'], 'a/x/y/z/b', false, true],
    [['a/**/**'], 'a', true, false], // a trailing ** is what is inside
    [['a/**/**'], 'a/x', false, true],
    [['**/**'], 'x', false, true],
    [['/**'], 'x/y', false, true],
    [['/a**b'], 'a/b', false, false], // ** inside a name is *: it stays inside the name
    [['/a**b'], 'axyb', false, true],
    [['***/x'], 'y/x', false, true],
    [['***/x'], 'y/z/x', false, false],
    [['?'], '😀', false, true], // one character, two UTF-16 units
    [['??'], '😀', false, false],
    [['*?x'], '😀x', false, true],
    [['[😀-😃]'], '😄', false, false], // U+1F604, just past the range
    [['[😀-😃]'], '😁', false, true],
    [['é?'], 'éa', false, true],
  ];
  for (const [patterns, path, isDir, want] of cases) assert.equal(compileIgnore(patterns)(path, isDir), want, `${JSON.stringify(patterns)} ${path}`);
});

test('patterns that make a backtracking RegExp exponential take a bounded number of steps', () => {
  const deep = (n: number, name = 'b') => Array.from({ length: n }, () => name).join('/');
  const cases: [string, string][] = [
    ['**/**/**/**/**/**/**/**/**/**/a', deep(10)],
    ['**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/a', deep(40)],
    ['a/**/a/**/a/**/a/**/a/**/a/**/a/**/b', deep(30, 'a')],
    ['**/a*a*a*a*a*a*a*a*a*a*a*a*b', `${deep(10)}/${'a'.repeat(200)}`],
    [`/${'*/'.repeat(60)}x`, deep(80, 'name')],
    [`/${'**/*/'.repeat(20)}x`, deep(60)],
    ['*'.repeat(1000) + 'x', 'a'.repeat(255)],
  ];
  for (const [pattern, path] of cases) {
    const counter: StepCounter = { steps: 0 };
    assert.equal(compileIgnore([pattern], counter)(path, false), false, pattern);
    // Each step reads one character of the path against one of the pattern, or moves one
    // pattern position past a name: a polynomial, here at most twice pattern x path.
    const bound = 2 * (pattern.length + 1) * (path.length + 1);
    assert.ok(counter.steps <= bound, `${pattern.slice(0, 40)}: ${counter.steps} steps, bound ${bound}`);
  }
});

test('the work grows linearly with the depth of the path, not exponentially', () => {
  const steps = (depth: number) => {
    const counter: StepCounter = { steps: 0 };
    const pattern = Array.from({ length: depth }, () => '**').join('/') + '/a';
    compileIgnore([pattern], counter)(Array.from({ length: depth }, () => 'b').join('/'), false);
    return counter.steps;
  };
  const [s10, s20, s40] = [steps(10), steps(20), steps(40)];
  // A backtracking (?:.*/)?(?:.*/)?... multiplies its work by the depth at every level.
  assert.ok(s20 <= 2.5 * s10 && s40 <= 2.5 * s20, `${s10}, ${s20}, ${s40}`);
});

test('the same answers as a RegExp translation of the subset, over random patterns and paths', () => {
  let seed = 16;
  const rnd = (n: number) => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed % n;
  };
  const pieces = ['a', 'b', 'c', '.', '*', '**', '?', '/', '[ab]', '[!a]', '[^b]', '[a-c]', '[]a]', '[', ']', '!', '\\*', ' ', '\\ ', '#', '**/', '/**', '***'];
  const names = ['a', 'b', 'c', 'ab', 'ba', 'a.b', '*', '[', 'cab', ']'];
  let compared = 0;
  for (let round = 0; round < 3000; round++) {
    const patterns = Array.from({ length: 1 + rnd(3) }, () => Array.from({ length: 1 + rnd(6) }, () => pieces[rnd(pieces.length)]).join(''));
    const ours = compileIgnore(patterns);
    const theirs = regexpIgnore(patterns);
    for (let k = 0; k < 8; k++) {
      const path = Array.from({ length: 1 + rnd(4) }, () => names[rnd(names.length)]).join('/');
      const isDir = [true, false, undefined][rnd(3)];
      assert.equal(ours(path, isDir), theirs(path, isDir), `${JSON.stringify(patterns)} ${path} ${isDir}`);
      compared++;
    }
  }
  assert.equal(compared, 24_000);
});

// The matcher rum had before (a RegExp per pattern), with what git does where it differed: a
// class never matches '/', a ']' right after [ or [! is a member, [^...] negates like [!...].
// Safe here: the random patterns are short.
function regexpIgnore(patterns: string[]): (relPath: string, isDir?: boolean) => boolean {
  const rules = patterns.flatMap((line) => {
    let p = line.replace(/(?<!\\)\s+$/, '');
    if (p === '' || p.startsWith('#')) return [];
    let negate = false;
    if (p.startsWith('!')) [negate, p] = [true, p.slice(1)];
    else if (p.startsWith('\\!') || p.startsWith('\\#')) p = p.slice(1);
    const dirOnly = p.endsWith('/');
    p = p.replace(/\/+$/, '');
    const anchored = p.includes('/');
    p = p.replace(/^\/+/, '');
    return p === '' ? [] : [{ negate, dirOnly, anchored, re: new RegExp(`^${globToRegExp(p)}$`) }];
  });
  return (relPath, isDir) => {
    const names = relPath.split('/');
    if (names.some((n) => ['.git', '.hg', '.svn'].includes(n))) return true;
    for (let i = 0; i < names.length; i++) {
      const prefix = names.slice(0, i + 1).join('/');
      let ignored = false;
      for (const r of rules) {
        if (r.negate !== ignored || (r.dirOnly && (i < names.length - 1 ? true : isDir) !== true)) continue;
        if (r.re.test(r.anchored ? prefix : names[i]!)) ignored = !r.negate;
      }
      if (ignored) return true;
    }
    return false;
  };
}

function globToRegExp(glob: string): string {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*' && (i === 0 || glob[i - 1] === '/') && (i + 2 === glob.length || glob[i + 2] === '/')) {
      re += i + 2 === glob.length ? '.*' : '(?:.*/)?';
      i += i + 2 === glob.length ? 1 : 2;
    } else if (c === '*') {
      re += '[^/]*';
      while (glob[i + 1] === '*') i++;
    } else if (c === '?') {
      re += '[^/]';
    } else if (c === '[') {
      const negate = glob[i + 1] === '!' || glob[i + 1] === '^';
      const end = glob.indexOf(']', negate ? i + 3 : i + 2);
      if (end < 0) {
        re += '\\[';
        continue;
      }
      let body = glob.slice(negate ? i + 2 : i + 1, end).replace(/\\/g, '\\\\');
      if (body.startsWith(']')) body = `\\]${body.slice(1)}`;
      re += negate ? `[^/${body}]` : `(?!/)[${body}]`;
      i = end;
    } else if (c === '\\' && i + 1 < glob.length) {
      re += esc(glob[++i]!);
    } else {
      re += esc(c);
    }
  }
  return re;
}
