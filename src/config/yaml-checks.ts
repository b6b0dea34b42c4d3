// Owns: the problems of rum.yaml as YAML, before any key means anything: syntax errors and
// unsupported tags, duplicate keys, keys that are collections or aliases, unknown aliases and
// alias bombs. Not: what the keys and values may be (issues.ts and the schema, rules.ts).
import { isAlias, isCollection, isScalar, visit, type Alias, type Node } from 'yaml';
import type { Diagnostic } from '../errors.js';
import { CONFIG_FILE } from './find.js';
import { keyText, type Source } from './source.js';

// A rum.yaml has no use for more; a "billion laughs" document needs far more to do harm.
export const MAX_ALIASES = 50;

const yamlHints: Partial<Record<string, string>> = {
  TAB_AS_INDENT: 'YAML indents with spaces only: replace the tab with spaces',
  MULTIPLE_DOCS: 'remove the --- line and whatever follows it',
  BLOCK_AS_IMPLICIT_KEY: 'a value that contains ": " must be quoted, e.g. key: "a: b"',
  BAD_DQ_ESCAPE: 'in double quotes a backslash starts an escape: write \\\\ for one, or use single quotes',
  BAD_INDENT: 'check the indentation: keys of one mapping start in the same column',
};
const flowHint = 'close every [ and { before the next key';

export function syntaxProblems(src: Source): Diagnostic[] {
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

export function duplicateKeys(src: Source): Diagnostic[] {
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

export function collectionKeys(src: Source): Diagnostic[] {
  const found: Diagnostic[] = [];
  visit(src.doc, {
    Pair(_, pair) {
      if (isCollection(pair.key) || isAlias(pair.key))
        found.push(src.diagnostic(src.nodePlace(pair.key), 'a key must be a plain word, not a list, mapping or alias'));
    },
  });
  return found;
}

export function unknownAliases(src: Source): Diagnostic[] {
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
export function aliasBomb(src: Source): Diagnostic {
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

const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);
