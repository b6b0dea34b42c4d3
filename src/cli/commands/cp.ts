// `rum cp SRC DST`: copy a file or a directory tree between the host and the guest. A leading ':'
// marks the guest side (`:path`, relative to the ssh user's home). Directories are copied whole
// (-r is accepted, as scp users type it). The copying itself is src/ssh/transfer.ts.
import { RumError } from '../../errors.js';
import { checkPath, download, upload, type TransferProgress, type TransferResult } from '../../ssh/transfer.js';
import { openProject, pick } from '../../machine/project.js';
import { guestShell } from '../guest.js';
import { Output } from '../output.js';
import type { CommonOptions } from './common.js';

export interface CpOptions extends CommonOptions {
  json?: boolean;
  recursive?: boolean; // directories are always copied whole; kept so `-r` from scp habit is not an error
}

export type CpPlan = { direction: 'upload' | 'download'; host: string; guest: string };

const EXAMPLES = 'rum cp ./dir :dir (to the guest), rum cp :/var/log/syslog . (from the guest)';

/** Which side is the guest: exactly one argument starts with ':'. */
export function cpPlan(src: string, dst: string): CpPlan {
  const guestSrc = src.startsWith(':');
  const guestDst = dst.startsWith(':');
  if (guestSrc && guestDst)
    throw new RumError(
      'USAGE',
      'rum cp copies between the host and the guest, but both paths start with ":" (the guest)',
      `copy inside the guest with rum exec -- cp -r ...; or: ${EXAMPLES}`,
    );
  if (!guestSrc && !guestDst)
    throw new RumError('USAGE', 'rum cp needs one guest path, marked with a leading ":"', `${EXAMPLES}; a host file whose name starts with ":" is ./:name`);
  const host = guestSrc ? dst : src;
  if (host === '') throw new RumError('USAGE', 'the host path is empty', EXAMPLES);
  checkPath(host, 'the host path');
  checkPath((guestSrc ? src : dst).slice(1), 'the guest path');
  return guestSrc ? { direction: 'download', host, guest: src.slice(1) } : { direction: 'upload', host, guest: dst.slice(1) };
}

/** `web:path` -> machine web, guest path `:path`, when `web` is one of `machines`. */
export function machineSide(arg: string, machines: readonly string[]): { machine?: string; arg: string } {
  const m = /^([a-z0-9][a-z0-9-]*):/.exec(arg);
  return m && machines.includes(m[1]!) ? { machine: m[1]!, arg: arg.slice(m[1]!.length) } : { arg };
}

export async function cp(src: string, dst: string, opts: CpOptions): Promise<number> {
  // A usage error needs no VM: checked at once unless a side may name a machine (`web:path`).
  const named = (arg: string) => /^[a-z0-9][a-z0-9-]*:/.test(arg);
  if (!named(src) && !named(dst)) cpPlan(src, dst);
  const o = await openProject({ config: opts.config });
  let m = o.machines[0]!;
  if (!o.project.single) {
    const names = o.machines.map((x) => x.name);
    const [s, d] = [machineSide(src, names), machineSide(dst, names)];
    const named = s.machine ?? d.machine;
    if (named === undefined || (s.machine && d.machine))
      throw new RumError('USAGE', 'rum cp needs one guest path, marked with its machine: NAME:path', `machines: ${names.join(', ')}; e.g. rum cp ./dir ${names[0]}:dir`);
    [src, dst, m] = [s.arg, d.arg, pick(o, [named], { one: true })[0]!];
  }
  const plan = cpPlan(src, dst);
  const out = new Output(opts);
  const session = await guestShell({ o, m });
  try {
    const onProgress = out.json ? undefined : progress(out, plan.direction);
    const r: TransferResult =
      plan.direction === 'upload'
        ? await upload(session, plan.host, plan.guest, { onProgress })
        : await download(session, plan.guest, plan.host, { onProgress });
    out.clearSpinner();
    for (const w of r.warnings) out.notice(w);
    const to = plan.direction === 'upload' ? `:${r.path}` : r.path;
    if (out.json) out.data({ direction: plan.direction, from: src, to, bytes: r.bytes, warnings: r.warnings });
    return 0;
  } finally {
    out.clearSpinner();
    await session.close();
  }
}

/**
 * A progress line once a copy has run for a second (small copies show nothing), then at most every
 * 200 ms on a terminal; off one, where each new text is a new line, every 5 s.
 */
function progress(out: Output, direction: CpPlan['direction']): (p: TransferProgress) => void {
  const started = Date.now();
  let shown = 0;
  const every = out.tty ? 200 : 5000;
  const verb = direction === 'upload' ? 'copying to the guest' : 'copying from the guest';
  return (p) => {
    const now = Date.now();
    if (now - started < 1000 || now - shown < every) return;
    shown = now;
    const of = p.total ? ` of ~${size(p.total)} (${Math.min(99, Math.floor((p.bytes / p.total) * 100))}%)` : '';
    out.waiting(`${verb}: ${size(p.bytes)}${of}`);
  };
}

function size(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return mib >= 1024 ? `${(mib / 1024).toFixed(1)} GiB` : `${mib.toFixed(1)} MiB`;
}
