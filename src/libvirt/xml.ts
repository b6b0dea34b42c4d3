// Owns: turning a tree of elements into XML text, escaping every attribute value and text node.
// Not: what a libvirt domain looks like (domain-xml.ts). Knows nothing of libvirt or rum.yaml.
import { RumError } from '../errors.js';

export type AttrValue = string | number | boolean | undefined;
export type Child = XmlElement | string | number | false | undefined | null | Child[];

export interface XmlElement {
  readonly name: string;
  readonly attrs: Readonly<Record<string, AttrValue>>;
  readonly children: readonly (XmlElement | string)[];
}

// XML names as we write them: an optional prefix, a local name. No user text is ever a name.
const NAME = /^([A-Za-z_][A-Za-z0-9_.-]*:)?[A-Za-z_][A-Za-z0-9_.-]*$/;

/**
 * Characters that may not go into a document we write. XML 1.0 forbids most C0 controls and
 * U+FFFE/U+FFFF outright; tab, CR, LF, DEL and C1 controls are legal XML but never belong in a path,
 * a name or a tag, and libvirt would store (or silently normalise) them. Lone surrogates cannot be
 * encoded as UTF-8 at all.
 */
// No u flag: a surrogate pair is then two code units, which is what the lookarounds need.
const FORBIDDEN = /[\u0000-\u001f\u007f-\u009f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** The first character `text` may not carry into XML, as `U+000A`, or undefined when it is clean. */
export function forbiddenChar(text: string): string | undefined {
  const m = FORBIDDEN.exec(text);
  if (!m) return undefined;
  return `U+${m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
}

/** Adds to `problems` why `v` cannot be XML text (empty, a control character); true when it can. */
export function textProblems(problems: string[], what: string, v: string): boolean {
  if (v.length === 0) problems.push(`${what} is empty`);
  const bad = forbiddenChar(v);
  if (bad !== undefined) problems.push(`${what} contains a control character (${bad}): ${JSON.stringify(v)}`);
  return bad === undefined && v.length > 0;
}

/** Refuses a spec with problems, all of them in one message: `what` is e.g. 'domain XML'. */
export function refuseProblems(what: string, name: string, problems: string[]): void {
  if (problems.length === 0) return;
  throw new RumError('CONFIG_INVALID', `cannot write the ${what} for ${JSON.stringify(name)}: ${problems.join('; ')}`, problems.length > 1 ? `${problems.length} problems` : undefined);
}

/** Throws a RumError naming `what` when `text` holds a character XML output must not carry. */
export function assertXmlSafe(what: string, text: string): void {
  const bad = forbiddenChar(text);
  if (bad !== undefined) {
    throw new RumError(
      'CONFIG_INVALID',
      `${what} contains a control character (${bad}): ${JSON.stringify(text)}`,
      'remove control characters (newlines, tabs, escapes) from names and paths',
    );
  }
}

export function escapeText(text: string): string {
  assertXmlSafe('XML text', text);
  // '>' too, so a "]]>" in user text can never read as the end of a CDATA section.
  return text.replace(/[&<>]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : '&gt;'));
}

export function escapeAttr(text: string): string {
  assertXmlSafe('XML attribute', text);
  return text.replace(/[&<>"']/g, (c) => ENTITY[c]!);
}

const ENTITY: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

/** An element. Attributes that are undefined are left out; children that are false/undefined/null too. */
export function el(name: string, attrs: Record<string, AttrValue> = {}, ...children: Child[]): XmlElement {
  if (!NAME.test(name)) throw new Error(`bug: not an XML element name: ${JSON.stringify(name)}`);
  for (const key of Object.keys(attrs)) {
    if (!NAME.test(key)) throw new Error(`bug: not an XML attribute name: ${JSON.stringify(key)}`);
  }
  return { name, attrs, children: flatten(children) };
}

function flatten(children: Child[]): (XmlElement | string)[] {
  const out: (XmlElement | string)[] = [];
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) out.push(...flatten(c));
    else if (typeof c === 'number') out.push(String(c));
    else out.push(c);
  }
  return out;
}

function attrText(v: Exclude<AttrValue, undefined>): string {
  return typeof v === 'boolean' ? (v ? 'yes' : 'no') : String(v);
}

function render(e: XmlElement, depth: number, indent: string, out: string[]): void {
  const pad = indent.repeat(depth);
  let open = `<${e.name}`;
  for (const [k, v] of Object.entries(e.attrs)) {
    if (v !== undefined) open += ` ${k}='${escapeAttr(attrText(v))}'`;
  }
  if (e.children.length === 0) {
    out.push(`${pad}${open}/>`);
  } else if (e.children.every((c) => typeof c === 'string')) {
    // Text-only content stays on one line: indentation inside it would change the value.
    out.push(`${pad}${open}>${e.children.map((c) => escapeText(c as string)).join('')}</${e.name}>`);
  } else if (e.children.some((c) => typeof c === 'string')) {
    throw new Error(`bug: <${e.name}> mixes text and elements`);
  } else {
    out.push(`${pad}${open}>`);
    for (const c of e.children) render(c as XmlElement, depth + 1, indent, out);
    out.push(`${pad}</${e.name}>`);
  }
}

/** The element as an indented document fragment (no XML declaration: libvirt does not want one). */
export function renderXml(root: XmlElement, indent = '  '): string {
  const out: string[] = [];
  render(root, 0, indent, out);
  return out.join('\n') + '\n';
}

/** Decode the five predefined entities and character references, as an XML parser would. */
export function unescapeXml(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (whole, ref: string) => {
    if (ref[0] === '#') {
      const code = ref[1] === 'x' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[ref] ?? whole;
  });
}
