// Owns: a node's key, kept as labelled per-field digests so "why is this stale" is a diff.
import { canonicalJson, digestOf, type Digest } from './digest.js';
import type { StaleReason } from './events.js';

export interface Fingerprint {
  fields: Record<string, Digest>;
  key: Digest;
}

// Code-unit order, not localeCompare: a key must not depend on the user's locale.
const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export function fingerprint(
  rule: { id: string; version: number },
  inputs: Record<string, unknown>,
  files: Record<string, Digest>,
  upstream: Record<string, Digest>,
): Fingerprint {
  const fields: Record<string, Digest> = { recipe: digestOf(`${rule.id}@${rule.version}`) };
  for (const [k, v] of Object.entries(inputs)) fields[`input:${k}`] = digestOf(canonicalJson(v));
  for (const [k, d] of Object.entries(files)) fields[`file:${k}`] = d;
  for (const [node, d] of Object.entries(upstream)) fields[`upstream:${node}`] = d;
  const lines = Object.keys(fields)
    .sort(byCodeUnit)
    .map((k) => `${k}=${fields[k]}`);
  return { fields, key: digestOf(lines.join('\n')) };
}

/** Why `now` differs from what was recorded: the recipe first, then inputs, then upstream. */
export function diffFields(recorded: Record<string, string>, now: Record<string, string>): StaleReason {
  if (recorded.recipe !== now.recipe) return { type: 'recipe-changed' };
  const changed = [...new Set([...Object.keys(recorded), ...Object.keys(now)])]
    .filter((k) => recorded[k] !== now[k])
    .sort(byCodeUnit);
  const inputs = [...new Set(changed.filter((k) => !k.startsWith('upstream:')).map((k) => k.replace(/^(input|file):/, '')))];
  if (inputs.length > 0) return { type: 'input-changed', fields: inputs };
  const nodes = changed.map((k) => k.replace(/^upstream:/, ''));
  return { type: 'upstream-changed', nodes };
}
