// `rum update`: resolve rum.yaml's base images again, show what changes, write rum.lock.
import { relative } from 'node:path';
import { exitCodes } from '../../errors.js';
import { Output } from '../output.js';
import type { CommonOptions } from './common.js';

export async function update(opts: CommonOptions & { 'dry-run'?: boolean }): Promise<number> {
  const out = new Output(opts);
  const { lockProject, openProject } = await import('../../machine/project.js');
  const { repin } = await import('../../machine/pinning.js');
  const { writeLock } = await import('../../config/lock-file.js');
  const o = await openProject({ config: opts.config, mountSources: false }); // mounts nothing
  // rum.lock is read and written under the project's lock, where `up` pins and reads it: neither
  // writes it over what the other wrote meanwhile, and no run plans with pins changing under it.
  // No machine is claimed: updating the pins makes no VM. A dry run writes nothing and waits for no one.
  const lock = opts['dry-run']
    ? undefined
    : await lockProject(o, [], { noWait: opts.wait === false, onWait: (pid) => out.info(`waiting for rum (pid ${pid})...`) });
  try {
    // It may download into the image cache: a `rum gc` must not remove that meanwhile.
    const { useCache } = await import('../../image/cache-use.js');
    const use = await useCache({ env: o.env, onWait: out.cacheWait });
    const r = await repin(o, { progress: (t) => out.waiting(t), note: (t) => out.notice(t) }).finally(() => use.release());
    const changed = r.changes.some((c) => c.change !== 'same');
    const write = changed && !opts['dry-run'];
    if (write) await writeLock(r.path, r.pins);
    out.pinChanges({ lock: relative(process.cwd(), r.path) || r.path, changes: r.changes, written: write, dryRun: opts['dry-run'] === true });
    return opts['dry-run'] && changed ? exitCodes.PLAN_CHANGES : 0;
  } finally {
    await lock?.release();
  }
}
