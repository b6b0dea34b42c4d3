// Owns: the CA certificates NODE_EXTRA_CA_CERTS names, when rum's launcher (bin/rum.js) kept
// Node from loading them at start-up. Read only for an https request, and added to Node's own
// roots, as Node itself would have done.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { RumError } from '../errors.js';

/** The `ca` option for an https request: undefined when Node's defaults already hold. */
export function deferredCa(env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const file = env.NODE_EXTRA_CA_CERTS ? undefined : env.RUM_EXTRA_CA_CERTS;
  if (!file) return undefined;
  try {
    return [...rootCertificates, readFileSync(file, 'utf8')];
  } catch (err) {
    throw new RumError(
      'IMAGE',
      `cannot read the CA certificates NODE_EXTRA_CA_CERTS names (${file}): ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      'point NODE_EXTRA_CA_CERTS at a readable PEM file, or unset it',
      { cause: err },
    );
  }
}
