// `rum destroy [NAME...]`: stop and undefine each machine's domain (only if it is this
// project's), delete its VM directory and nothing outside it. The shared image cache stays, and
// so do the machines not named. Destroying every machine also removes the project's network.
// Idempotent.
import { rm } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { RumError } from '../../errors.js';
import type { Machine } from '../../machine/machine.js';
import { lockProject, openProject, pick } from '../../machine/project.js';
import { vmsRoot } from '../../paths.js';
import { Output } from '../output.js';
import { confirm } from '../prompt.js';
import { namesOf, type CommonOptions } from './common.js';

export async function destroy(first: string | undefined, opts: CommonOptions & { yes?: boolean }): Promise<number> {
  const out = new Output(opts);
  const o = await openProject({ config: opts.config, mountSources: false });
  const names = namesOf(opts, first);
  const machines = pick(o, names);
  const single = o.project.single;
  // Nothing claimed and no domain: nothing to destroy, and no directory made by locking. Anything
  // else is decided under the lock: an `up` still before define would otherwise define a domain
  // after this looked and before it deleted the disk.
  const there = await Promise.all(machines.map(async (m) => o.claimed.has(m) || (await m.owned()) !== 'absent'));
  const todo = machines.filter((_, i) => there[i]);
  const results = machines.map((m) => ({ vm: m.domain, machine: m.name, destroyed: false }));
  const everything = names.length === 0 || machines.length === o.machines.length;
  if (todo.length > 0) {
    const lock = await lockProject(o, todo, { noWait: opts.wait === false, onWait: (pid) => out.info(`waiting for rum (pid ${pid})...`) });
    try {
      const owned = await Promise.all(todo.map((m) => m.owned())); // refuses a domain that is not ours
      const what = single ? `VM ${todo[0]!.domain} and its disk (${todo[0]!.vm.dir})` : `${todo.map((m) => m.name).join(', ')} and ${todo.length > 1 ? 'their disks' : 'its disk'}`;
      if (!opts.yes) await confirm(out, `rum destroy deletes ${what}. Continue?`);
      for (const [i, m] of todo.entries()) {
        if (owned[i] === 'ours') await m.remove();
        await removeDir(m);
        results.find((r) => r.machine === m.name)!.destroyed = true;
        out.info(`destroyed VM ${m.domain}`);
      }
      if (everything && !single) await (await import('../../machine/network.js')).removeProjectNetwork(o, (t) => out.info(t));
    } finally {
      await lock.release().catch(() => undefined); // a single VM's lock went with its directory
    }
  }
  for (const r of results) if (!r.destroyed) out.info(`VM ${r.vm} does not exist: nothing to destroy`);
  if (opts.json) out.data(single ? { vm: results[0]!.vm, destroyed: results[0]!.destroyed } : { project: o.project.name, machines: results });
  return 0;
}

/** The only delete rum does: this VM's own directory, checked to be exactly that. */
async function removeDir(m: Machine): Promise<void> {
  if (dirname(m.vm.dir) !== vmsRoot(m.env) || basename(m.vm.dir) !== m.domain)
    throw new RumError('BUG', `refusing to delete ${m.vm.dir}: not a VM directory`);
  await rm(m.vm.dir, { recursive: true, force: true });
}
