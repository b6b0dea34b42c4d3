// `rum ssh [-- ARGS]`: OpenSSH in rum's place, with the VM's key, pinned known_hosts, port and
// user, so terminals, agent forwarding and escapes behave as users expect.
import { execOpenSsh, opensshArgs } from '../../ssh/openssh.js';
import { guestTarget } from '../guest.js';
import type { CommonOptions } from './common.js';

export async function ssh(opts: CommonOptions & { _: string[] }): Promise<number> {
  const t = await guestTarget(opts);
  const args = opensshArgs(
    { host: t.host, port: t.port, user: t.user, keyPath: t.vm.vm.path('clientKey'), knownHostsPath: t.vm.vm.path('knownHosts'), alias: `rum-${t.vm.config.name}` },
    opts._ ?? [],
  );
  return execOpenSsh(args);
}
