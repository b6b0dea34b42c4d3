// `rum down`: ACPI shutdown, waiting up to --timeout; a hard stop only with --force or after
// asking on a terminal. Idempotent. The disk is untouched: `rum up` starts the same guest again.
import { RumError } from '../../errors.js';
import { ctxFor, lockVm, openVm } from '../../vm.js';
import { Output } from '../output.js';
import { confirm } from '../prompt.js';
import type { CommonOptions } from './common.js';

export async function down(opts: CommonOptions & { timeout?: number | string; force?: boolean }): Promise<number> {
  const out = new Output(opts);
  const timeoutS = Number(opts.timeout ?? 60);
  if (!Number.isFinite(timeoutS) || timeoutS < 0) throw new RumError('USAGE', `--timeout ${opts.timeout} is not a number of seconds`);
  const o = await openVm({ config: opts.config });
  const ctx = ctxFor(o);
  const [{ ownedDomain }, { stopDomain }] = await Promise.all([import('../../../tasks/defined-domain.js'), import('../../../tasks/running-domain.js')]);
  const absent = () => {
    out.info(`VM ${o.config.name} does not exist: nothing to stop`);
    if (opts.json) out.data({ vm: o.config.name, state: 'absent' });
    return 0;
  };
  // Decided under the lock whenever the VM was claimed: an `up` may be about to define it.
  if (!o.exists && (await ownedDomain(ctx)) === 'absent') return absent();
  const lock = await lockVm(o, { noWait: opts.wait === false, onWait: (pid) => out.info(`waiting for rum (pid ${pid})...`) });
  try {
    if ((await ownedDomain(ctx)) === 'absent') return absent();
    const progress = (m: string) => out.waiting(m);
    let r = await stopDomain(ctx, { timeoutMs: timeoutS * 1000, force: opts.force === true, progress });
    if (r === 'timeout') {
      out.clearSpinner();
      await confirm(out, `the guest did not power off within ${timeoutS} s. Pull the plug (like a power cut)? Continue?`).catch((err: unknown) => {
        throw new RumError('FAILED', `the guest did not power off within ${timeoutS} s`, 'wait longer (--timeout SECONDS) or stop it hard with --force', { cause: err });
      });
      r = await stopDomain(ctx, { timeoutMs: 0, force: true, progress });
    }
    out.clearSpinner();
    out.info(r === 'not-running' ? `VM ${o.config.name} is not running` : `VM ${o.config.name} is shut off`);
    if (opts.json) out.data({ vm: o.config.name, state: 'shut off' });
    return 0;
  } finally {
    await lock.release();
  }
}
