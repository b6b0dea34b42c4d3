// `rum ssh-config`: a `Host rum-<name>` block for ~/.ssh/config, so plain ssh, scp, rsync -e ssh
// and VS Code Remote-SSH reach the guest with its key and pinned host key.
import { sshConfigBlock } from '../../ssh/openssh.js';
import { guestTarget } from '../guest.js';
import { Output } from '../output.js';
import { oneMachine, type CommonOptions } from './common.js';

export async function sshConfig(opts: CommonOptions): Promise<number> {
  const t = await guestTarget(await oneMachine(opts));
  const target = {
    host: t.host,
    port: t.port,
    user: t.user,
    keyPath: t.m.vm.path('clientKey'),
    knownHostsPath: t.m.vm.path('knownHosts'),
    alias: `rum-${t.m.domain}`,
  };
  const out = new Output(opts);
  if (opts.json) out.data({ ...target, block: sshConfigBlock(target) });
  else out.out(sshConfigBlock(target));
  return 0;
}
