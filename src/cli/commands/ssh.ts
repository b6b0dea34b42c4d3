// `rum ssh [NAME] [-- ARGS]`: OpenSSH in rum's place, with the VM's key, pinned known_hosts, port and
// user, so terminals, agent forwarding and escapes behave as users expect.
import { execOpenSsh, opensshArgs } from '../../ssh/openssh.js';
import { guestTarget } from '../guest.js';
import { oneMachine, type CommonOptions } from './common.js';

export async function ssh(opts: CommonOptions & { _: string[] }): Promise<number> {
  const { o, m, rest } = await oneMachine(opts);
  const t = await guestTarget({ o, m });
  const args = opensshArgs(
    { host: t.host, port: t.port, user: t.user, keyPath: m.vm.path('clientKey'), knownHostsPath: m.vm.path('knownHosts'), alias: `rum-${m.domain}` },
    rest,
  );
  return execOpenSsh(args);
}
