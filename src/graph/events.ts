// Owns: why a node is stale, what a run will do about it, and how it went. Data first; each value
// is worded once, here, and --json emits the same values.
import { assertNever } from '../errors.js';

export type StaleReason =
  | { type: 'missing' }
  | { type: 'reset' }
  | { type: 'recipe-changed' }
  | { type: 'input-changed'; fields: string[] }
  | { type: 'upstream-changed'; nodes: string[] }
  | { type: 'check-failed'; why: string }
  | { type: 'lost'; why: string }; // a stateful artifact is gone: only --reset makes it again

/** What a run does with a node. `kept-*` are stale nodes deliberately left alone. */
export type Action =
  | 'none'
  | 'build'
  | 'rebuild'
  | 'define'
  | 'redefine'
  | 'start'
  | 'restart'
  | 'kept-needs-reset' // stateful: applying the change would lose the guest's data
  | 'kept-needs-restart'; // effect: the guest is running; applying would stop it

export type NodeState = 'fresh' | 'stale' | 'kept' | 'pending';

export function describeReason(r: StaleReason): string {
  switch (r.type) {
    case 'missing':
      return 'not built yet';
    case 'reset':
      return '--reset asked for a fresh first boot';
    case 'recipe-changed':
      return 'rum now builds it differently';
    case 'input-changed':
      return `${r.fields.join(', ')} changed`;
    case 'upstream-changed':
      return `${r.nodes.join(', ')} changed`;
    case 'check-failed':
    case 'lost':
      return r.why;
    default:
      return assertNever(r);
  }
}

/** An action that changes something. `kept-*` change nothing but are drift all the same. */
export function isWork(a: Action): boolean {
  return a !== 'none' && !a.startsWith('kept-');
}

export type Outcome =
  | { type: 'built'; action: Action; ms: number }
  | { type: 'fresh' }
  | { type: 'cutoff'; ms: number } // rebuilt, same output digest: dependents stay fresh
  | { type: 'kept'; action: Action }
  | { type: 'skipped'; because: string }
  | { type: 'failed'; error: unknown };

/** Progress a run reports while it works; the CLI renders it (spinner on a TTY, lines off it). */
export type RunEvent =
  | { type: 'start'; node: string; action: Action; reason?: StaleReason }
  | { type: 'progress'; node: string; message: string; fraction?: number }
  | { type: 'notice'; node: string; message: string }
  | { type: 'done'; node: string; outcome: Outcome };
