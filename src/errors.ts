// Owns: the one error type users see, and the exit status each kind of failure maps to.
// Rendered once, in src/cli/main.ts; everything else only throws.

/** Exit statuses, documented in the README. A new code goes here and in the README table. */
export const exitCodes = {
  FAILED: 1, // generic failure (also: the guest command's own status for `rum exec`)
  USAGE: 2,
  CONFIG_INVALID: 2,
  LOCKED: 3,
  VIRSH_MISSING: 4,
  LIBVIRT: 4,
  IMAGE: 5,
  SSH: 6,
  STATE: 7, // the VM directory or its state record is not usable
  BUILD: 8, // a rule's build failed
  TOOL_MISSING: 9,
  PLAN_CHANGES: 10, // `up --dry-run`: something would change (so CI can assert "no drift")
  NO_SPACE: 11, // a filesystem rum writes to is full
  BUG: 70,
  INTERRUPTED: 130,
} as const;

export type ErrorCode = keyof typeof exitCodes;

export class RumError extends Error {
  override readonly name = 'RumError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly hint?: string,
    opts?: ErrorOptions,
  ) {
    super(message, opts);
  }
}

/** A problem located in a file: rendered as `file:line:col`, the line, and a caret. */
export interface Diagnostic {
  file: string;
  line: number; // 1-based
  col: number; // 1-based
  length?: number; // of the offending token on that line, for the caret underline; unknown: one caret
  message: string;
  hint?: string;
  source?: string; // the offending line's text
}

/** Every problem found in rum.yaml (or another file rum reads, such as rum.lock), reported at once. */
export class ConfigError extends RumError {
  constructor(
    readonly diagnostics: Diagnostic[],
    what = 'rum.yaml',
  ) {
    super(
      'CONFIG_INVALID',
      diagnostics.length === 1 ? `${what} has a problem` : `${what} has ${diagnostics.length} problems`,
    );
  }
}

export function isRumError(err: unknown): err is RumError {
  return err instanceof RumError;
}

export function assertNever(x: never): never {
  throw new Error(`unreachable: ${JSON.stringify(x)}`);
}
