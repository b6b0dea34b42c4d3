// `rum provision [--system] [--boot]`: run rum.yaml's provision scripts again in the guest, as
// they are now (cloud-init runs user-data once per instance), streaming their output and exiting
// with the first failing status. The stored scripts are replaced too, so the next boot runs the
// new boot script.
import { RumError } from '../../errors.js';
import { guestShell } from '../guest.js';
import { Output } from '../output.js';
import { oneMachine, type CommonOptions } from './common.js';

export async function provision(opts: CommonOptions & { system?: boolean; boot?: boolean }): Promise<number> {
  const out = new Output(opts);
  const [{ shellQuote }, { GuestPaths }] = await Promise.all([
    import('../../ssh/openssh.js'),
    import('../../cloudinit/documents.js'),
  ]);
  const picked = await oneMachine(opts);
  const p = picked.m.config.provision;
  const both = !opts.system && !opts.boot;
  const scripts: { name: string; path: string; text: string | undefined }[] = [
    ...(both || opts.system ? [{ name: 'system', path: GuestPaths.system, text: p.system }] : []),
    ...(both || opts.boot ? [{ name: 'boot', path: GuestPaths.boot, text: p.boot }] : []),
  ].filter((s) => s.text !== undefined);
  if (scripts.length === 0) throw new RumError('USAGE', 'rum.yaml has no provision script to run', 'add provision.system or provision.boot');
  const session = await guestShell(picked);
  try {
    for (const s of scripts) {
      const path = shellQuote(s.path);
      // The script travels on stdin: never through a shell word.
      const put = await session.execText(`sudo -n mkdir -p "$(dirname ${path})" && sudo -n tee ${path} >/dev/null && sudo -n chmod 0755 ${path}`, {
        stdin: s.text!.endsWith('\n') ? s.text! : `${s.text}\n`,
      });
      if (put.code !== 0) throw new RumError('SSH', `could not write the ${s.name} script in the guest: ${put.stderr.trim()}`);
      out.info(`--- provision.${s.name}`);
      const r = await session.exec(`sudo -n sh ${path}`, { stdout: process.stdout, stderr: process.stderr });
      if (r.code !== 0) {
        out.info(`provision.${s.name} exited ${r.code ?? r.signal}`);
        return r.code ?? 1;
      }
    }
    return 0;
  } finally {
    await session.close();
  }
}
