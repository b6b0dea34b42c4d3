// `rum destroy`: stop and undefine the domain (only if it is this project's), delete the VM
// directory and nothing outside it. The shared image cache stays. Idempotent.
import { rm } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { RumError } from '../../errors.js';
import { vmsRoot } from '../../paths.js';
import { ctxFor, lockVm, openVm } from '../../vm.js';
import { Output } from '../output.js';
import { confirm } from '../prompt.js';
import type { CommonOptions } from './common.js';

export async function destroy(opts: CommonOptions & { yes?: boolean }): Promise<number> {
  const out = new Output(opts);
  const o = await openVm({ config: opts.config });
  const ctx = ctxFor(o);
  const [{ ownedDomain }, { virsh }] = await Promise.all([import('../../../tasks/defined-domain.js'), import('../../../tasks/context.js')]);
  // Nothing claimed and no domain: nothing to destroy, and no directory made by locking. Anything
  // else is decided under the lock: an `up` still before define would otherwise define a domain
  // after this looked and before it deleted the disk.
  if (!o.exists && (await ownedDomain(ctx)) === 'absent') return nothingToDestroy(out, o.config.name, opts.json);
  const lock = await lockVm(o, { noWait: opts.wait === false, onWait: (pid) => out.info(`waiting for rum (pid ${pid})...`) });
  try {
    const domain = await ownedDomain(ctx); // refuses a domain that is not ours
    if (!opts.yes) await confirm(out, `rum destroy deletes VM ${o.config.name} and its disk (${o.vm.dir}). Continue?`);
    if (domain === 'ours') {
      const v = virsh(ctx);
      await v.destroy(o.config.name);
      await v.undefine(o.config.name, { nvram: true });
    }
    // The only delete rum does: this VM's own directory, checked to be exactly that.
    if (dirname(o.vm.dir) !== vmsRoot() || basename(o.vm.dir) !== o.config.name)
      throw new RumError('BUG', `refusing to delete ${o.vm.dir}: not a VM directory`);
    await rm(o.vm.dir, { recursive: true, force: true });
  } finally {
    await lock.release().catch(() => undefined); // its file went with the directory
  }
  out.info(`destroyed VM ${o.config.name}`);
  if (opts.json) out.data({ vm: o.config.name, destroyed: true });
  return 0;
}

function nothingToDestroy(out: Output, name: string, json: boolean | undefined): number {
  out.info(`VM ${name} does not exist: nothing to destroy`);
  if (json) out.data({ vm: name, destroyed: false });
  return 0;
}
