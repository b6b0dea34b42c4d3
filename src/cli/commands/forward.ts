// `rum forward`: in nat mode, listen on each `ports:` entry's host address and carry it to the
// guest over SSH, in the foreground until Ctrl-C. (In user mode QEMU forwards them itself.)
import { RumError } from '../../errors.js';
import { guestTarget } from '../guest.js';
import { Output } from '../output.js';
import { oneMachine, type CommonOptions } from './common.js';

/** Runs the forwards until Ctrl-C; resolves with 0 then. Shared with `rum up --attach`. */
export async function runForwards(opts: CommonOptions, out: Output): Promise<number> {
  const t = await guestTarget(await oneMachine(opts));
  const c = t.m.config;
  if (c.network.mode === 'user') {
    for (const p of c.ports) out.info(`${p.bind}:${p.host} -> guest ${p.guest}/${p.proto} (QEMU user networking forwards it)`);
    return 0;
  }
  const udp = c.ports.filter((p) => p.proto === 'udp');
  if (udp.length > 0) out.notice(`UDP ports (${udp.map((p) => p.host).join(', ')}) cannot go through SSH: use network.mode: user for them`);
  const tcp = c.ports.filter((p) => p.proto === 'tcp');
  if (tcp.length === 0) throw new RumError('USAGE', 'rum.yaml has no TCP ports to forward', 'add ports: [{ host: 8080, guest: 8080 }]');
  const [{ connect }, { startForwards }] = await Promise.all([import('../../ssh/connect.js'), import('../../ssh/forward.js')]);
  const fwd = await startForwards(tcp, () => connect(t), (e) => {
    if (e.type === 'listening') out.info(`forwarding ${e.forward.bind}:${e.forward.host} -> guest ${e.forward.guest}`);
    if (e.type === 'error') out.notice(`${e.forward.bind}:${e.forward.host}: ${e.message}`);
    if (e.type === 'reconnecting') out.waiting(`reconnecting to the guest (attempt ${e.attempt}): ${e.why}`);
  });
  out.info('Ctrl-C ends the forwards');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await fwd.close();
  return 0;
}

export async function forward(opts: CommonOptions): Promise<number> {
  return runForwards(opts, new Output(opts));
}
