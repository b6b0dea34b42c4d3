// `rum update`: resolve rum.yaml's base images again, show what changes, write rum.lock.
import { relative } from 'node:path';
import { exitCodes } from '../../errors.js';
import { Output } from '../output.js';
import type { CommonOptions } from './common.js';

export async function update(opts: CommonOptions & { 'dry-run'?: boolean }): Promise<number> {
  const out = new Output(opts);
  const { openProject } = await import('../../machine/project.js');
  const { repin } = await import('../../machine/pinning.js');
  const { writeLock } = await import('../../config/lock-file.js');
  const o = await openProject({ config: opts.config, mountSources: false }); // mounts nothing
  // It may download into the image cache: a `rum gc` must not remove that meanwhile.
  const { useCache } = await import('../../image/cache-use.js');
  const use = await useCache({ env: o.env, onWait: out.cacheWait });
  const r = await repin(o, { progress: (t) => out.waiting(t), note: (t) => out.notice(t) }).finally(() => use.release());
  const changed = r.changes.some((c) => c.change !== 'same');
  const write = changed && !opts['dry-run'];
  if (write) await writeLock(r.path, r.pins);
  out.pinChanges({ lock: relative(process.cwd(), r.path) || r.path, changes: r.changes, written: write, dryRun: opts['dry-run'] === true });
  return opts['dry-run'] && changed ? exitCodes.PLAN_CHANGES : 0;
}
