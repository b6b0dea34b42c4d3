// Owns: how commands that talk to the guest find it: the address ssh-ready recorded, the VM's
// key and the pinned host key. No graph run: a command that needs a booted VM says so.
import { readFile } from 'node:fs/promises';
import { RumError } from '../errors.js';
import { StateStore } from '../graph/state.js';
import { openVm, type OpenVm } from '../vm.js';
import type { SshTarget } from '../ssh/connect.js';
import type { GuestShell } from '../ssh/control.js';
import type { CommonOptions } from './commands/common.js';

export async function guestAddress(o: OpenVm): Promise<{ host: string; port: number }> {
  const state = await StateStore.open(o.exists ? o.vm.path('state') : undefined);
  const addr = state.output('ssh-ready')?.data as { host: string; port: number } | undefined;
  if (!addr) throw new RumError('SSH', `VM ${o.config.name} is not up`, 'run `rum up` first');
  return addr;
}

export async function guestTarget(opts: CommonOptions, opened?: OpenVm): Promise<SshTarget & { vm: OpenVm }> {
  const o = opened ?? (await openVm({ config: opts.config }));
  const { host, port } = await guestAddress(o);
  const [privateKey, hostKey] = await Promise.all([readFile(o.vm.path('clientKey')), readFile(o.vm.path('hostPub'), 'utf8')]);
  return { host, port, user: o.config.ssh.user, privateKey, hostKey: hostKey.trim(), vm: o };
}

// Like OpenSSH's ControlPersist: a shared login outlives the command that made it by this much.
const PERSIST_MS = 10 * 60_000;

/**
 * A connection for running commands in the guest: the VM's shared login (a control master) when
 * one can serve, else a direct one. RUM_SSH_SHARE=0 always connects directly.
 */
export async function guestShell(opts: CommonOptions, opened?: OpenVm): Promise<GuestShell & { vm: OpenVm }> {
  const target = await guestTarget(opts, opened);
  const { vm, ...t } = target;
  if (process.env.RUM_SSH_SHARE !== '0') {
    const { controlSession } = await import('../ssh/control.js');
    const shared = await controlSession(vm.vm.path('sshControl'), t, PERSIST_MS);
    if (shared) return Object.assign(shared, { vm });
  }
  const { connect } = await import('../ssh/connect.js');
  return Object.assign(await connect(t), { vm });
}
