// Owns: serialising a document the way cloud-init will read it. cloud-init parses with PyYAML,
// which speaks YAML 1.1: `yes`, `on`, `0x10`, `1_000`, `12:30` and `2001-12-14` are not strings
// there, and NEL, U+2028 and U+2029 are line breaks, so a raw one inside a scalar would end it.
// Not: what the documents say (documents.ts).
import { Document, Scalar, visit } from 'yaml';

// Characters PyYAML refuses raw (outside its printable set) or reads as a line break, plus CR and
// the BOM. A string holding one is written double-quoted, where each has an escape. `=` and `<<`
// are the 1.1 value and merge keys, which the yaml library's 1.1 schema leaves plain.
const UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]/;
// What the yaml library leaves raw inside double quotes (JSON.stringify does not escape them).
const RAW_IN_QUOTES = /[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]/g;
// A line of only blanks in a block scalar reads as an empty line to PyYAML: its blanks are lost.
const BLANK_LINE = /(^|\n)[ \t]+(\n|$)/;
const MERGE = 'tag:yaml.org,2002:merge';
const ESCAPE: Record<string, string> = { '\x85': '\\N', '\u2028': '\\L', '\u2029': '\\P' };

function escapeChar(ch: string): string {
  const code = ch.charCodeAt(0);
  return ESCAPE[ch] ?? (code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`);
}

/** YAML that PyYAML loads to exactly `value` (plain data: strings, numbers, booleans, arrays, maps). */
export function yaml11(value: unknown): string {
  // Without the merge tag, whose stringifier writes the string `<<` bare whatever its node says.
  const doc = new Document(value, { version: '1.1', customTags: (tags) => tags.filter((t) => typeof t === 'string' || t.tag !== MERGE) });
  visit(doc, {
    Scalar(_key, node: Scalar) {
      if (typeof node.value !== 'string') return;
      const v = node.value;
      if (UNSAFE.test(v) || BLANK_LINE.test(v) || v === '=' || v === '<<') node.type = Scalar.QUOTE_DOUBLE;
      // PyYAML refuses a tab in a plain scalar; a script keeps its tabs readable as a block.
      else if (v.includes('\t')) node.type = v.includes('\n') ? Scalar.BLOCK_LITERAL : Scalar.QUOTE_DOUBLE;
    },
  });
  // Never folded (lineWidth 0, one line per double-quoted string): the yaml library's folds are
  // not all read back alike by PyYAML. Every character RAW_IN_QUOTES matches can
  // only be inside a string made double-quoted above, so escaping it there is exact.
  return doc.toString({ lineWidth: 0, doubleQuotedMinMultiLineLength: Infinity }).replace(RAW_IN_QUOTES, escapeChar);
}
