// Owns: how commands that talk to the guest find it: the address ssh-ready recorded, the VM's
// key and the pinned host key. No graph run: a command that needs a booted VM says so.
import { readFile } from 'node:fs/promises';
import { RumError } from '../errors.js';
import { StateStore } from '../graph/state.js';
import type { Machine } from '../machine/machine.js';
import type { OpenProject } from '../machine/project.js';
import type { SshTarget } from '../ssh/connect.js';
import type { GuestShell } from '../ssh/control.js';
import type { SshAddress } from '../../tasks/ssh-ready.js';

/** A machine chosen by a command, with its project. */
export interface Picked {
  o: OpenProject;
  m: Machine;
}

export async function guestAddress({ o, m }: Picked): Promise<SshAddress> {
  const state = await StateStore.open(o.claimed.has(m) ? m.vm.path('state') : undefined);
  const a = state.output('ssh-ready')?.data as Partial<SshAddress> | undefined;
  const up = o.project.single ? '`rum up`' : `\`rum up ${m.name}\``;
  if (typeof a?.host !== 'string' || typeof a.port !== 'number') throw new RumError('SSH', `VM ${m.domain} is not up`, `run ${up} first`);
  return { host: a.host, port: a.port };
}

export async function guestTarget(p: Picked): Promise<SshTarget & Picked> {
  const { host, port } = await guestAddress(p);
  const { m } = p;
  const [privateKey, hostKey] = await Promise.all([readFile(m.vm.path('clientKey')), readFile(m.vm.path('hostPub'), 'utf8')]);
  return { host, port, user: m.config.ssh.user, privateKey, hostKey: hostKey.trim(), ...p };
}

// Like OpenSSH's ControlPersist: a shared login outlives the command that made it by this much.
const PERSIST_MS = 10 * 60_000;

/**
 * A connection for running commands in the guest: the VM's shared login (a control master) when
 * one can serve, else a direct one. RUM_SSH_SHARE=0 always connects directly.
 */
export async function guestShell(p: Picked): Promise<GuestShell> {
  const { o: _o, m, ...t } = await guestTarget(p);
  if (process.env.RUM_SSH_SHARE !== '0') {
    const { controlSession } = await import('../ssh/control.js');
    const shared = await controlSession(m.vm.path('sshControl'), t, PERSIST_MS);
    if (shared) return shared;
  }
  const { connect } = await import('../ssh/connect.js');
  return connect(t);
}
