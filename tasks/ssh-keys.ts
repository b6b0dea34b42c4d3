// Owns: the VM's SSH client key pair and the guest's host key pair, made once on the host so
// the host key is pinned before first boot. Kept until destroy.
import { access, stat } from 'node:fs/promises';
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import type { RumCtx } from './context.js';

export const sshKeys = defineRule<RumCtx, Record<string, never>, { client: string; host: string }>({
  id: 'ssh-keys',
  kind: 'stateful',
  version: 1,
  deps: [],
  inputs: () => ({}),
  output: ({ vm }) => vm.path('clientKey'),
  build: async ({ ctx: { vm, config } }) => {
    const { generateKeyPair, readKeyPair, writeKeyPair } = await import('../src/ssh/keys.js');
    // A crash after writing but before recording must not replace keys a guest already trusts.
    const client =
      (await readKeyPair(vm.path('clientKey'), vm.path('clientPub'))) ?? (await generateKeyPair(`rum@${config.name}`));
    const host =
      (await readKeyPair(vm.path('hostKey'), vm.path('hostPub'))) ?? (await generateKeyPair(`rum-host@${config.name}`));
    await writeKeyPair(vm.path('clientKey'), vm.path('clientPub'), client);
    await writeKeyPair(vm.path('hostKey'), vm.path('hostPub'), host);
    return { digest: digestOf(`${client.public}\n${host.public}`), data: { client: client.public, host: host.public } };
  },
  check: async ({ ctx: { vm } }) => {
    for (const f of ['clientKey', 'clientPub', 'hostKey', 'hostPub'] as const) {
      try {
        await access(vm.path(f));
      } catch {
        // The guest trusts only the keys its first boot installed: new ones need a fresh one.
        return { ok: false, lost: true, why: `the VM's SSH key ${vm.path(f)} is gone` };
      }
    }
    const mode = (await stat(vm.path('clientKey'))).mode & 0o777;
    return mode & 0o077 ? { ok: false, why: `${vm.path('clientKey')} is readable by others (mode ${mode.toString(8)})` } : { ok: true };
  },
});
