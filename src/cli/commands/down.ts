// `rum down [NAME...]`: ACPI shutdown, waiting up to --timeout; a hard stop only with --force or
// after asking on a terminal. Idempotent. The disk is untouched: `rum up` starts the same guest
// again. No names: every machine.
import { RumError } from '../../errors.js';
import type { Machine } from '../../machine/machine.js';
import { lockProject, openProject, pick } from '../../machine/project.js';
import { Output } from '../output.js';
import { confirm } from '../prompt.js';
import { namesOf, type CommonOptions } from './common.js';

export async function down(first: string | undefined, opts: CommonOptions & { timeout?: number | string; force?: boolean }): Promise<number> {
  const out = new Output(opts);
  const timeoutS = Number(opts.timeout ?? 60);
  if (!Number.isFinite(timeoutS) || timeoutS < 0) throw new RumError('USAGE', `--timeout ${opts.timeout} is not a number of seconds`);
  const o = await openProject({ config: opts.config, mountSources: false });
  const machines = pick(o, namesOf(opts, first));
  const single = o.project.single;
  const results: { vm: string; machine: string; state: string }[] = [];
  const said = (m: Machine, state: 'absent' | 'shut off', text: string) => {
    out.info(text);
    results.push({ vm: m.domain, machine: m.name, state });
  };
  // Decided under the lock whenever a machine was claimed: an `up` may be about to define it.
  const unclaimed = machines.filter((m) => !o.claimed.has(m));
  const absent = await Promise.all(unclaimed.map(async (m) => ((await m.owned()) === 'absent' ? m : undefined)));
  const todo = machines.filter((m) => !absent.includes(m));
  for (const m of machines) if (absent.includes(m)) said(m, 'absent', `VM ${m.domain} does not exist: nothing to stop`);
  if (todo.length > 0) {
    const lock = await lockProject(o, todo, { noWait: opts.wait === false, onWait: (pid) => out.info(`waiting for rum (pid ${pid})...`) });
    try {
      // One after another: under TCG, guests shutting down together share two cores.
      for (const m of todo) {
        if ((await m.owned()) === 'absent') {
          said(m, 'absent', `VM ${m.domain} does not exist: nothing to stop`);
          continue;
        }
        if ((await m.domainFacts()).state === 'suspended') {
          said(m, 'shut off', `VM ${m.domain} is suspended: it is not running, and its saved memory is kept (\`rum up\` resumes it)`);
          continue;
        }
        const progress = (t: string) => out.waiting(single ? t : `${m.name}: ${t}`);
        let r = await m.stop({ timeoutMs: timeoutS * 1000, force: opts.force === true, progress });
        if (r === 'timeout') {
          out.clearSpinner();
          await confirm(out, `${single ? 'the guest' : m.name} did not power off within ${timeoutS} s. Pull the plug (like a power cut)? Continue?`).catch((err: unknown) => {
            throw new RumError('FAILED', `${single ? 'the guest' : m.name} did not power off within ${timeoutS} s`, 'wait longer (--timeout SECONDS) or stop it hard with --force', { cause: err });
          });
          r = await m.stop({ timeoutMs: 0, force: true, progress });
        }
        out.clearSpinner();
        said(m, 'shut off', r === 'not-running' ? `VM ${m.domain} is not running` : `VM ${m.domain} is shut off`);
      }
    } finally {
      await lock.release();
    }
  }
  if (opts.json) out.data(single ? { vm: results[0]!.vm, state: results[0]!.state } : { project: o.project.name, machines: results });
  return 0;
}
