// Checks shared by rules whose artifact is a file in the VM directory.
import { access } from 'node:fs/promises';
import type { Check } from '../src/graph/rule.js';

export async function fileExists(path: string): Promise<Check> {
  try {
    await access(path);
    return { ok: true };
  } catch {
    return { ok: false, why: `${path} is missing` };
  }
}
