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
for (const l of lines) if (l.held !== l.tried) console.log(`  not held: ${l.what}: ${l.held}/${l.tried}`);
