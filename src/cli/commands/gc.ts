// `rum gc`: remove the cached images and layers no VM uses, and what killed downloads and layer
// builds left; `--dry-run` lists them and the space. Refuses while a run uses the cache.
import { collectGarbage } from '../../image/gc.js';
import { Output } from '../output.js';

export interface GcOptions {
  json?: boolean;
  'dry-run'?: boolean;
}

export async function gc(opts: GcOptions): Promise<number> {
  const out = new Output(opts);
  const report = await collectGarbage({ dryRun: opts['dry-run'] === true, onWait: out.cacheWait });
  out.gc(report);
  return report.notes.some((n) => n.type === 'not-removed') ? 1 : 0; // said in a note each
}
