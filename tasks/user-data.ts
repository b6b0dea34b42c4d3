// Owns: the #cloud-config user-data: the ssh user with the VM's key, the pinned host key,
// apt sources, provision scripts and mount entries (packages are the layer's: tasks/layer.ts). Not: the seed ISO (seed-iso.ts).
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeAtomic } from '../src/files/atomic.js';
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import { shellQuote } from '../src/ssh/openssh.js';
import { guestMounts, resolveMounts } from '../src/mounts/resolve.js';
import { fileExists } from './checks.js';
import { onProjectNetwork, projectDomain } from '../src/machine/network.js';
import type { RumCtx } from './context.js';
import { sshKeys } from './ssh-keys.js';
import { layer } from './layer.js';

/** The apt sources the first boot writes: none when the provisioned layer holds them. */
export function bootAptSources(c: RumCtx): string[] | undefined {
  return layer.applies!(c) ? undefined : c.config.provision.apt_sources;
}

const ordinary = (uid: number) => uid >= 1000 && uid < 60000;

/**
 * The guest user's uid: the host user's, so what the guest writes into a share is that user's
 * on the host (virtiofsd and 9p keep the guest's uid). rum run by root (CI, a server, `sudo`)
 * takes the owner of the project's directory instead: a checkout belongs to the person who
 * works in it. Neither ordinary: the image's default (1000).
 */
function guestUid(configFile: string): number {
  const own = process.getuid?.();
  if (own !== undefined && own !== 0) return ordinary(own) ? own : 1000; // a system uid would clash in the guest
  const projectOwner = statSync(dirname(configFile)).uid;
  return ordinary(projectOwner) ? projectOwner : 1000;
}

/** A writable share the guest's user cannot write into: said once, with what to do. */
function unwritableShare(m: { target: string; source: string }, uid: number): string | undefined {
  const st = statSync(m.source);
  if (st.uid === uid || st.mode & 0o002) return undefined;
  const owner = st.uid === 0 ? 'root' : `uid ${st.uid}`;
  return `mount ${m.target}: ${m.source} belongs to ${owner}, so the guest's user (uid ${uid}) cannot write to it; run rum as the user who owns it, or give it to uid ${uid} (chown -R ${uid} ${shellQuote(m.source)})`;
}

export const userData = defineRule({
  id: 'user-data',
  kind: 'derived',
  version: 7, // 7: warm boots (bootcmd installs them; fstab lines follow the seed)
  deps: [sshKeys],
  inputs: (ctx: RumCtx) => ({
    'network.hostname': ctx.config.network.hostname,
    'ssh.user': ctx.config.ssh.user,
    uid: guestUid(ctx.config.file),
    'ssh.authorized_keys': ctx.config.ssh.authorized_keys,
    // Always empty now (packages are the layer's), kept so that the keys of VMs made before
    // layers stand: a field that goes makes every user-data stale.
    'provision.packages': [] as string[],
    'provision.apt_sources': bootAptSources(ctx),
    'provision.system': ctx.config.provision.system,
    'provision.boot': ctx.config.provision.boot,
    mounts: guestMounts(ctx.config),
    // Only on a project network: a single VM's key stays what it was.
    ...(onProjectNetwork(ctx.project, ctx.config) ? { 'network.domain': projectDomain(ctx.project) } : {}),
  }),
  output: ({ vm }) => vm.path('userData'),
  check: ({ ctx: { vm } }) => fileExists(vm.path('userData')),
  build: async ({ ctx: { vm, config }, inputs: i, notice }) => {
    for (const m of resolveMounts(config)) {
      const why = m.readonly ? undefined : unwritableShare(m, i.uid);
      if (why) notice(why);
    }
    const { userDataDocument } = await import('../src/cloudinit/documents.js'); // loads yaml
    const read = (f: 'clientPub' | 'hostKey' | 'hostPub') => readFile(vm.path(f), 'utf8').then((s) => s.trim());
    const text = userDataDocument({
      hostname: i['network.hostname'],
      user: i['ssh.user'],
      uid: i.uid,
      authorizedKeys: [await read('clientPub'), ...i['ssh.authorized_keys']],
      hostKey: { private: `${await read('hostKey')}\n`, public: await read('hostPub') },
      aptSources: i['provision.apt_sources'],
      system: i['provision.system'],
      boot: i['provision.boot'],
      mounts: i.mounts,
      ...(i['network.domain'] ? { searchDomain: i['network.domain'] } : {}),
    });
    // 0600: it carries the guest's private host key.
    await writeAtomic(vm.path('userData'), text, 0o600);
    return { digest: digestOf(text) };
  },
});
