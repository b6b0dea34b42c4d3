// The suite's reliability summary: each fault or hostile-input test adds what it tried and how
// many came through as promised; scripts/tally.mjs prints the totals after the run. RUM_TALLY is
// set by `make test`; outside it, nothing is recorded.
import { appendFileSync } from 'node:fs';

export type TallyKind = 'fault' | 'input';

/** `held`: survived (faults) or rejected at their line / carried exactly (inputs). */
export function tally(kind: TallyKind, what: string, tried: number, held: number): void {
  const file = process.env.RUM_TALLY;
  if (!file) return;
  appendFileSync(file, `${JSON.stringify({ kind, what, tried, held })}\n`);
}
