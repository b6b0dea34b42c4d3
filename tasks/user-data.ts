// Owns: the #cloud-config user-data: the ssh user with the VM's key, the pinned host key,
// packages, provision scripts and mount entries. Not: the seed ISO (seed-iso.ts).
import { readFile } from 'node:fs/promises';
import { writeAtomic } from '../src/files/atomic.js';
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import { guestMounts } from './mounts.js';
import { fileExists } from './checks.js';
import type { RumCtx } from './context.js';

/** The host user's uid for the guest user, when it is an ordinary user's (not root's 0). */
function hostUserUid(): number | undefined {
  const u = process.getuid?.();
  return u !== undefined && u >= 1000 && u < 60000 ? u : undefined;
}

export const userData = defineRule({
  id: 'user-data',
  kind: 'derived',
  version: 4, // 2: the guest user gets the host user's uid; 3: mounts by fstab + bootcmd; 4: minimal module lists
  deps: ['ssh-keys'],
  inputs: ({ config: c }: RumCtx) => ({
    'network.hostname': c.network.hostname,
    'ssh.user': c.ssh.user,
    uid: hostUserUid(),
    'ssh.authorized_keys': c.ssh.authorized_keys,
    'provision.packages': c.provision.packages,
    'provision.apt_sources': c.provision.apt_sources,
    'provision.system': c.provision.system,
    'provision.boot': c.provision.boot,
    mounts: guestMounts(c),
  }),
  output: ({ vm }) => vm.path('userData'),
  check: ({ ctx: { vm } }) => fileExists(vm.path('userData')),
  build: async ({ ctx: { vm }, inputs: i }) => {
    const { userDataDocument } = await import('../src/cloudinit/documents.js'); // loads yaml
    const read = (f: 'clientPub' | 'hostKey' | 'hostPub') => readFile(vm.path(f), 'utf8').then((s) => s.trim());
    const text = userDataDocument({
      hostname: i['network.hostname'],
      user: i['ssh.user'],
      uid: i.uid,
      authorizedKeys: [await read('clientPub'), ...i['ssh.authorized_keys']],
      hostKey: { private: `${await read('hostKey')}\n`, public: await read('hostPub') },
      packages: i['provision.packages'],
      aptSources: i['provision.apt_sources'],
      system: i['provision.system'],
      boot: i['provision.boot'],
      mounts: i.mounts,
    });
    // 0600: it carries the guest's private host key.
    await writeAtomic(vm.path('userData'), text, 0o600);
    return { digest: digestOf(text) };
  },
});
