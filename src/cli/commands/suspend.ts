// `rum suspend [NAME...]`: save each running guest's memory (libvirt's managed save) and stop it;
// `rum up` restores it as it was. What blocks a save is said before anything is touched:
// virtiofs shares (libvirt cannot save a vhost-user-fs device). 9p shares are unmounted in the
// guest first (a mounted 9p share blocks the save too) and mounted again after the restore.
// The guest's filesystems are synced first: saved memory that is later discarded (the definition
// changed) must not take the guest's unwritten files with it.
import { RumError } from '../../errors.js';
import type { Machine } from '../../machine/machine.js';
import { lockProject, openProject, pick, type OpenProject } from '../../machine/project.js';
import { resolveMounts } from '../../mounts/resolve.js';
import { guestTarget } from '../guest.js';
import { Output } from '../output.js';
import { namesOf, type CommonOptions } from './common.js';

export async function suspend(first: string | undefined, opts: CommonOptions): Promise<number> {
  const out = new Output(opts);
  const o = await openProject({ config: opts.config, mountSources: false });
  const machines = pick(o, namesOf(opts, first));
  const single = o.project.single;
  const blocked = machines.flatMap((m) => resolveMounts(m.config).filter((x) => x.type === 'virtiofs').map((x) => ({ m, target: x.target })));
  if (blocked.length > 0) {
    const where = blocked.map((b) => (single ? b.target : `${b.m.name}:${b.target}`)).join(', ');
    throw new RumError(
      'USAGE',
      `cannot suspend: libvirt cannot save a guest with virtiofs shares (${where})`,
      'set `type: 9p` on those mounts (rum unmounts 9p shares for the save and mounts them again after), or use `rum down`: nothing was changed',
    );
  }
  const results: { vm: string; machine: string; state: string }[] = [];
  const lock = await lockProject(o, machines.filter((m) => o.claimed.has(m)), { noWait: opts.wait === false, onWait: (pid) => out.info(`waiting for rum (pid ${pid})...`) });
  try {
    for (const m of machines) {
      const state = o.claimed.has(m) && (await m.owned()) === 'ours' ? (await m.domainFacts()).state : undefined;
      if (state !== 'running') {
        out.info(state === 'suspended' ? `VM ${m.domain} is suspended already` : `VM ${m.domain} is not running (${state ?? 'not created'}): nothing to suspend`);
        results.push({ vm: m.domain, machine: m.name, state: state ?? 'absent' });
        continue;
      }
      // After a snapshot of the running guest, libvirt's live definition still names the file QEMU
      // was moved onto under its temporary name: a saved memory would be restored onto a file that
      // is gone.
      const top = await m.virsh.liveDiskSource(m.domain, 'vda');
      if (top !== undefined && top !== m.vm.path('overlay'))
        throw new RumError(
          'STATE',
          `cannot suspend ${m.domain}: a snapshot moved its disk while it ran, and libvirt's view of the running guest still names the old file`,
          `\`rum down${single ? '' : ` ${m.name}`}\` and \`rum up${single ? '' : ` ${m.name}`}\` once, then suspend; nothing was changed`,
        );
      out.waiting(`${single ? '' : `${m.name}: `}saving the guest's memory`);
      await settleGuest(o, m);
      try {
        await m.suspend();
      } catch (err) {
        await remountShares(o, m).catch(() => undefined); // as it was before this command
        throw err;
      }
      out.clearSpinner();
      out.info(`VM ${m.domain} is suspended: \`rum up${single ? '' : ` ${m.name}`}\` resumes it`);
      results.push({ vm: m.domain, machine: m.name, state: 'suspended' });
    }
  } finally {
    out.clearSpinner();
    await lock.release();
  }
  if (opts.json) out.data(single ? { vm: results[0]!.vm, state: results[0]!.state } : { project: o.project.name, machines: results });
  return 0;
}

/** A login of its own, not the shared one: that one would outlive the save on a dead connection. */
async function direct(o: OpenProject, m: Machine) {
  const [{ connect }, { o: _o, m: _m, ...t }] = await Promise.all([import('../../ssh/connect.js'), guestTarget({ o, m })]);
  return connect(t);
}

const shares9p = (m: Machine) => resolveMounts(m.config).filter((x) => x.type === '9p');

/**
 * Before the save: the page cache written to disk (a first boot's files can still be only in
 * memory a minute later; booting afresh from the disk would find them empty), then each 9p share
 * unmounted (a mounted one blocks the save); a busy share stops the suspend.
 */
async function settleGuest(o: OpenProject, m: Machine): Promise<void> {
  const targets = shares9p(m).map((x) => x.target);
  const { shellQuote } = await import('../../ssh/openssh.js');
  const session = await direct(o, m);
  try {
    // Targets are validated guest paths (schema); quoted all the same.
    const unmount = targets.length > 0 ? ` && for t in ${targets.map(shellQuote).join(' ')}; do ! mountpoint -q "$t" || sudo -n umount "$t" || exit 1; done` : '';
    const r = await session.execText(`sync${unmount}`);
    if (r.code !== 0) {
      await remountShares(o, m).catch(() => undefined);
      throw new RumError(
        'FAILED',
        `cannot suspend ${m.domain}: a 9p share could not be unmounted in the guest (${r.stderr.trim() || `exit ${r.code}`})`,
        'a process in the guest has files open there (fuser -m TARGET in the guest names it); end it and try again, or use `rum down`',
      );
    }
  } finally {
    await session.close();
  }
}

async function remountShares(o: OpenProject, m: Machine): Promise<void> {
  if (shares9p(m).length === 0) return;
  const session = await direct(o, m);
  try {
    await session.execText('sudo -n mount -a -t 9p');
  } finally {
    await session.close();
  }
}
