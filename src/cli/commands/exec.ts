// `rum exec -- CMD...`: run a command in the guest over the VM's own SSH connection; stdout and
// stderr stream separately, stdin is forwarded when piped, the exit status is the command's.
import { RumError } from '../../errors.js';
import { guestShell } from '../guest.js';
import type { CommonOptions } from './common.js';

export async function exec(opts: CommonOptions & { _: string[] }): Promise<number> {
  const argv = opts._ ?? [];
  if (argv.length === 0) throw new RumError('USAGE', 'rum exec needs a command', 'rum exec -- uname -a');
  const { shellQuote } = await import('../../ssh/openssh.js');
  const session = await guestShell(opts);
  try {
    // Each word quoted: the guest's shell sees exactly this argv.
    const r = await session.exec(argv.map(shellQuote).join(' '), {
      stdout: process.stdout,
      stderr: process.stderr,
      ...(process.stdin.isTTY ? {} : { stdin: process.stdin }),
    });
    if (r.code === null) throw new RumError('SSH', `the command was ended by ${r.signal ?? 'a signal'}`);
    return r.code;
  } finally {
    await session.close();
  }
}
