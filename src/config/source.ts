// Owns: rum.yaml's text and its parsed document, and the way from a config path to a place in the
// text (line, column, the line's text, how much to underline). Not: what is wrong there
// (yaml-checks.ts, issues.ts, rules.ts, machines.ts) or how a place is drawn (frame.ts).
import { isAlias, isCollection, isMap, isNode, isScalar, isSeq, type Document, type LineCounter, type Node, type Pair } from 'yaml';
import type { Diagnostic } from '../errors.js';
import type { Locate, Place } from './rules.js';

/** rum.yaml's text, its parsed document, and the way from a config path to a line. */
export class Source {
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
export function keyText(key: unknown): string {
  return isScalar(key) ? String(key.value ?? '') : String(key);
}
