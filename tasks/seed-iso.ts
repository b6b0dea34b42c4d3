// Owns: the NoCloud seed ISO (volume id cidata) holding meta-data and user-data. Deterministic,
// so an unchanged pair of documents gives the same digest and early cutoff works.
import { readFile } from 'node:fs/promises';
import { writeAtomic } from '../src/files/atomic.js';
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import { fileExists } from './checks.js';
import type { RumCtx } from './context.js';
import { metaData } from './meta-data.js';
import { userData } from './user-data.js';

export const seedIso = defineRule({
  id: 'seed-iso',
  kind: 'derived',
  version: 1,
  deps: [metaData, userData],
  resettable: true,
  inputs: (_: RumCtx) => ({}),
  output: ({ vm }) => vm.path('seedIso'),
  build: async ({ ctx: { vm } }) => {
    const { buildIso } = await import('../src/iso/iso9660.js');
    const iso = buildIso({
      volumeId: 'cidata',
      files: [
        { name: 'meta-data', data: await readFile(vm.path('metaData')) },
        { name: 'user-data', data: await readFile(vm.path('userData')) },
      ],
    });
    await writeAtomic(vm.path('seedIso'), iso, 0o600); // user-data inside carries the host key
    return { digest: digestOf(iso) };
  },
  check: ({ ctx: { vm } }) => fileExists(vm.path('seedIso')),
});
