// Owns: how a Diagnostic looks: `file:line:col: message`, the line, a caret under the offending
// token, and the hint. Pure: it returns text; the CLI's output module decides where it goes.
import { isAbsolute, relative } from 'node:path';
import kleur from 'kleur';
import type { Diagnostic } from '../errors.js';

interface Paint {
  where: (s: string) => string;
  gutter: (s: string) => string;
  caret: (s: string) => string;
  hint: (s: string) => string;
}
const plain: Paint = { where: (s) => s, gutter: (s) => s, caret: (s) => s, hint: (s) => s };
const colored: Paint = {
  where: (s) => kleur.bold(s),
  gutter: (s) => kleur.dim(s),
  caret: (s) => kleur.bold().red(s),
  hint: (s) => kleur.cyan(s),
};

/**
 * ```
 * rum.yaml:7:3: unknown key "memroy" in resources
 *    7 |   memroy: 2G
 *      |   ^^^^^^
 * hint: did you mean "memory"?
 * ```
 * `cwd`: the file is shown relative to it when inside it (default: the process's).
 */
export function formatDiagnostic(d: Diagnostic, opts: { color: boolean; cwd?: string }): string {
  if (!opts.color) return frame(d, plain, opts.cwd);
  // kleur decides from one global flag (TTY, NO_COLOR); here the caller has already decided.
  const was = kleur.enabled;
  kleur.enabled = true;
  try {
    return frame(d, colored, opts.cwd);
  } finally {
    kleur.enabled = was;
  }
}

/** Several diagnostics, a blank line between them. */
export function formatDiagnostics(ds: readonly Diagnostic[], opts: { color: boolean; cwd?: string }): string {
  return ds.map((d) => formatDiagnostic(d, opts)).join('\n\n');
}

function frame(d: Diagnostic, paint: Paint, cwd = process.cwd()): string {
  const out = [`${paint.where(`${displayPath(d.file, cwd)}:${d.line}:${d.col}`)}: ${oneLine(d.message)}`];
  if (d.source !== undefined) {
    const num = String(d.line);
    const width = Math.max(4, num.length);
    const text = visible(d.source);
    const before = text.slice(0, Math.max(0, d.col - 1));
    const token = text.slice(before.length, before.length + Math.max(1, d.length ?? 1));
    // Under a tab, a tab: the caret lines up whatever the terminal's tab width.
    const pad = [...before].map((ch) => (ch === '\t' ? '\t' : ' '.repeat(cellWidth(ch)))).join('');
    const carets = '^'.repeat(Math.max(1, [...token].reduce((n, ch) => n + (ch === '\t' ? 1 : cellWidth(ch)), 0)));
    out.push(`${paint.gutter(`${num.padStart(width)} |`)} ${text}`.trimEnd());
    out.push(`${paint.gutter(`${' '.repeat(width)} |`)} ${pad}${paint.caret(carets)}`);
  }
  if (d.hint !== undefined) out.push(`${paint.hint('hint:')} ${oneLine(d.hint)}`);
  return out.join('\n');
}

function displayPath(file: string, cwd: string): string {
  const rel = relative(cwd, file);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file;
}

// The file is untrusted text headed for a terminal: no escape sequences, no carriage returns, no
// line or paragraph separators. Each becomes one replacement character, so columns still line up.
const visible = (s: string) => s.replace(/[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029]/g, '\ufffd');
const oneLine = (s: string) => visible(s.replace(/\r?\n/g, ' '));

/** Terminal cells a character takes: 2 for East Asian wide and emoji, 0 for combining marks. */
function cellWidth(ch: string): number {
  const cp = ch.codePointAt(0)!;
  if (/\p{Mn}|\p{Me}|\u200b|\u200d/u.test(ch)) return 0;
  if (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0xa4cf) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1faff) ||
    (cp >= 0x20000 && cp <= 0x3fffd)
  )
    return 2;
  return 1;
}
