// Owns: the CA certificates NODE_EXTRA_CA_CERTS names, when rum's launcher (bin/rum.js) kept
// Node from loading them at start-up. Read only for an https request, and added to Node's
// default store, as Node itself would have done. No node:tls here: every command loads this.
import { readFileSync } from 'node:fs';
import { RumError } from '../errors.js';

let deferred: string | undefined;

/** At start-up: takes back the name the launcher set aside, so the processes rum starts (ssh,
 * and whatever its config runs) see the user's environment as it was. */
export function takeDeferredCa(env: NodeJS.ProcessEnv = process.env): void {
  const file = env.RUM_EXTRA_CA_CERTS;
  if (file === undefined) return;
  delete env.RUM_EXTRA_CA_CERTS;
  if (!file) return void delete env.NODE_EXTRA_CA_CERTS;
  deferred = file;
  env.NODE_EXTRA_CA_CERTS = file;
}

/** The certificates (PEM) to add to Node's default store for an https request, or undefined
 * when Node's defaults already hold them. */
export function deferredCaPem(): string | undefined {
  if (!deferred) return undefined;
  try {
    return readFileSync(deferred, 'utf8');
  } catch (err) {
    // Node itself would only warn and go on; a download that then fails on trust says less.
    throw new RumError(
      'IMAGE',
      `cannot read the CA certificates NODE_EXTRA_CA_CERTS names (${deferred}): ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      'point NODE_EXTRA_CA_CERTS at a readable PEM file, or unset it',
      { cause: err },
    );
  }
}
