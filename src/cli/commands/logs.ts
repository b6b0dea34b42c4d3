// `rum logs`: cloud-init's output log from the guest (-f follows); --console: the serial console
// log the domain writes (works when SSH never came up); --provision: the provision scripts'
// output and exit statuses.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { RumError } from '../../errors.js';
import { guestShell } from '../guest.js';
import { oneMachine, type CommonOptions } from './common.js';

export interface LogsOptions extends CommonOptions {
  follow?: boolean;
  console?: boolean;
  provision?: boolean;
}

async function consoleLog(opts: LogsOptions): Promise<number> {
  const { m } = await oneMachine(opts);
  const path = m.vm.path('console');
  if (!(await stat(path).catch(() => undefined)))
    throw new RumError('FAILED', `no console log yet: ${path}`, 'the domain writes it once it has started (`rum up`)');
  await new Promise<void>((resolve, reject) =>
    createReadStream(path).on('error', reject).on('end', resolve).pipe(process.stdout, { end: false }),
  );
  if (!opts.follow) return 0;
  // Follow like tail -f: poll the size (the file is written by virtlogd, not by us).
  let offset = (await stat(path)).size;
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    const size = (await stat(path).catch(() => undefined))?.size ?? 0;
    if (size < offset) offset = 0; // rotated or truncated by a new boot
    if (size > offset) {
      await new Promise<void>((resolve, reject) =>
        createReadStream(path, { start: offset, end: size - 1 }).on('error', reject).on('end', resolve).pipe(process.stdout, { end: false }),
      );
      offset = size;
    }
  }
}

export async function logs(opts: LogsOptions): Promise<number> {
  if (opts.console) return consoleLog(opts);
  const { GuestPaths } = await import('../../cloudinit/documents.js');
  const session = await guestShell(await oneMachine(opts));
  try {
    const cmd = opts.provision
      ? `for s in system boot; do f=${GuestPaths.logs}/$s.log; [ -f "$f" ] && { echo "== $s (exit $(cat ${GuestPaths.logs}/$s.status 2>/dev/null || echo '?'))"; cat "$f"; }; done; true`
      : `sudo -n tail -n +1 ${opts.follow ? '-F ' : ''}/var/log/cloud-init-output.log`;
    const r = await session.exec(cmd, { stdout: process.stdout, stderr: process.stderr });
    return r.code ?? 1;
  } finally {
    await session.close();
  }
}
