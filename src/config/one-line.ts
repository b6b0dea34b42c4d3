// Owns: what a rum.yaml value that must stay one line may hold, and the words for what it may not.
// Such values end up as one line of something else: cloud-init's user-data (PyYAML, YAML 1.1,
// where NEL, U+2028 and U+2029 end a line), apt's sources.list, authorized_keys, fstab, libvirt's
// XML (which cannot hold most C0 controls even escaped). One character that any of them reads as
// a line break lets one value write a line of its own, such as a top-level key of user-data.
import type { z } from 'zod';

// C0 controls (NUL, tab, LF, CR, ESC...), DEL, C1 controls (U+0085 is NEL), the line and
// paragraph separators, and the byte order mark (a zero-width no-break space mid-text).
const NOT_ON_ONE_LINE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\ufeff]/;

const NAMES: Record<number, string> = {
  0x00: 'NUL',
  0x09: 'a tab',
  0x0a: 'a line feed, \\n',
  0x0d: 'a carriage return, \\r',
  0x1b: 'ESC',
  0x7f: 'DEL',
  0x85: 'NEL, a line break to YAML 1.1',
  0x2028: 'LINE SEPARATOR, a line break to YAML 1.1',
  0x2029: 'PARAGRAPH SEPARATOR, a line break to YAML 1.1',
  0xfeff: 'a byte order mark',
};

const hex = (cp: number) => `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;

/** The first character `text` may not hold on one line, described; undefined when there is none. */
export function notOnOneLine(text: string): string | undefined {
  const m = NOT_ON_ONE_LINE.exec(text);
  if (!m) return undefined;
  const cp = m[0].codePointAt(0)!;
  return `${hex(cp)} (${NAMES[cp] ?? 'a control character'})`;
}

export const ONE_LINE_HINT =
  'write it as one line of printable text; in double quotes look for an escape such as \\n, \\t, \\x85, \\N, \\L, \\P or \\u2028';

/**
 * `schema` refusing any value with such a character, before its other checks run (they would
 * only add a second, vaguer message). `what` names the value: "an apt source line".
 * The value itself is not quoted back: it may be a secret, and it is on the line shown anyway.
 */
export function oneLine<T extends z.ZodString>(schema: T, what: string): T {
  return schema.superRefine((text, ctx) => {
    const found = notOnOneLine(text);
    if (found !== undefined)
      ctx.addIssue({ code: 'custom', message: `${what} must be one line: it holds ${found}`, params: { hint: ONE_LINE_HINT }, continue: false });
  }) as T;
}
