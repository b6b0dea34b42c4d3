// Prints the reliability summary of a test run from the lines test/helpers/tally.ts appended:
// faults tried and survived, hostile inputs tried and rejected at their line or carried exactly.
import { readFileSync } from 'node:fs';

const file = process.argv[2];
let lines = [];
try {
  lines = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
} catch (err) {
  if (err.code !== 'ENOENT') throw err;
}
const sum = (kind) => lines.filter((l) => l.kind === kind).reduce((a, l) => ({ tried: a.tried + l.tried, held: a.held + l.held, n: a.n + 1 }), { tried: 0, held: 0, n: 0 });
const f = sum('fault');
const i = sum('input');
console.log(`reliability: faults ${f.held}/${f.tried} survived (${f.n} tests); hostile inputs ${i.held}/${i.tried} rejected at their line or carried exactly (${i.n} tests)`);
const byWhat = new Map();
for (const l of lines) {
  const k = `${l.kind}\t${l.what}`;
  const a = byWhat.get(k) ?? { tried: 0, held: 0 };
  byWhat.set(k, { tried: a.tried + l.tried, held: a.held + l.held });
}
for (const [k, a] of byWhat) {
  const [kind, what] = k.split('\t');
  console.log(`  ${a.held === a.tried ? ' ' : '!'} ${kind === 'fault' ? 'fault' : 'input'} ${String(a.held).padStart(5)}/${String(a.tried).padEnd(5)} ${what}`);
}
