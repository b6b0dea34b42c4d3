// Owns: why a node is stale, what a run will do about it, and how it went. Data first; each value
// is worded once, here, and --json emits the same values.
import { basename } from 'node:path';
import { assertNever } from '../errors.js';
import type { Plan, PlannedNode } from './plan.js';

export type StaleReason =
  | { type: 'missing' }
  | { type: 'reset' }
  | { type: 'recipe-changed' }
  | { type: 'input-changed'; fields: string[] }
  | { type: 'upstream-changed'; nodes: string[] }
  | { type: 'check-failed'; why: string }
  | { type: 'lost'; why: string } // a stateful artifact is gone: only --reset makes it again
  | { type: 'unrecorded' }; // a stateful artifact is there, but no record says how it was made

/** What a run does with a node. `kept-*` are stale nodes deliberately left alone. */
export type Action =
  | 'none'
  | 'build'
  | 'rebuild'
  | 'define'
  | 'redefine'
  | 'start'
  | 'restart'
  | 'resume' // a suspended or paused guest: its memory as it was, no boot
  | 'create'
  | 'update'
  | 'adopt' // stateful, unrecorded: the artifact is taken as it is and recorded, never made again
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
    case 'unrecorded':
      return 'it exists, but the state record does not say how it was made';
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

/** A state record that was not sound (state-schema.ts): what was wrong and what was given up.
 * `problem` and `dropped` carry the file's own keys: escape them before printing. */
export interface StateDamage {
  file: string;
  problem: string;
  dropped: string[] | 'all';
  generationLost: boolean;
}

/** What the engine met that the user must hear of once, though the command goes on. */
export type EngineWarning = { type: 'state-damaged' } & StateDamage;

export function describeWarning(w: EngineWarning): string {
  switch (w.type) {
    case 'state-damaged': {
      // Ids from the file: any number, any length.
      const ids = w.dropped === 'all' ? [] : w.dropped.map((id) => (id.length > 40 ? `${id.slice(0, 40)}…` : id));
      const named = ids.length > 5 ? `${ids.slice(0, 5).join(', ')} and ${ids.length - 5} more` : ids.join(', ');
      const adopted = "count as unrecorded, and the VM's disk and keys are adopted as they are";
      const given =
        w.dropped === 'all' ? `all its nodes ${adopted}` : ids.length > 0 ? `the records of ${named} are dropped: those nodes ${adopted}` : 'its node records are sound and kept';
      const generation = w.generationLost ? "; its --reset count is lost too, and read back from the guest's instance-id" : '';
      return `the state record ${w.file} is damaged (${w.problem}): ${given}${generation}. \`rum up\` records afresh and keeps the damaged file as ${basename(w.file)}.damaged`;
    }
    default:
      return assertNever(w.type);
  }
}

/** Progress a run reports while it works; the CLI renders it (spinner on a TTY, lines off it). */
export type RunEvent =
  | { type: 'start'; node: string; action: Action; reason?: StaleReason }
  | { type: 'progress'; node: string; message: string; fraction?: number }
  | { type: 'notice'; node: string; message: string }
  | { type: 'warning'; warning: EngineWarning }
  | { type: 'done'; node: string; outcome: Outcome };

/** The nodes a plan would build, or keeps stale on purpose (drift all the same). */
export function changing(plan: Plan): PlannedNode[] {
  return plan.nodes.filter((n) => n.action !== 'none');
}

/** Whether a plan changes anything: the one answer `up --dry-run`, `status` and --json give. */
export const planChanges = (plan: Plan): boolean => changing(plan).length > 0;
