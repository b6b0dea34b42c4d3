// Owns: asking the user. Off a TTY nothing can be asked: the question becomes an error naming -y.
import { createInterface } from 'node:readline/promises';
import { RumError } from '../errors.js';
import type { Output } from './output.js';

/** Whether a question can be put to someone: a terminal on both ends. */
export function canAsk(): boolean {
  return process.stdin.isTTY === true && process.stderr.isTTY === true;
}

export async function confirm(out: Output, question: string): Promise<void> {
  if (!canAsk()) {
    throw new RumError('USAGE', `${question.replace(/ Continue\?$/, '')}`, 'nothing can be asked here (no terminal): pass -y to go ahead');
  }
  out.clearSpinner();
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = (await rl.question(`${question} [y/N] `)).trim().toLowerCase();
    if (answer !== 'y' && answer !== 'yes') throw new RumError('USAGE', 'cancelled: nothing was changed');
  } finally {
    rl.close();
  }
}
