// `rum exec [NAME] -- CMD...`: run a command in the guest over the VM's own SSH connection; stdout and
// stderr stream separately, stdin is forwarded when piped, the exit status is the command's.
import { constants } from 'node:os';
import { RumError } from '../../errors.js';
import { guestShell } from '../guest.js';
import { oneMachine, type CommonOptions } from './common.js';

// Ending rum ends the guest command too (its whole process group), as with a local command: a
// dev server left running in the guest after Ctrl-C would hold its port.
const ENDING = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export async function exec(opts: CommonOptions & { _: string[] }): Promise<number> {
  const { o, m, rest: argv } = await oneMachine(opts);
  if (argv.length === 0) throw new RumError('USAGE', 'rum exec needs a command', o.project.single ? 'rum exec -- uname -a' : `rum exec ${m.name} -- uname -a`);
  const { shellQuote } = await import('../../ssh/openssh.js');
  const session = await guestShell({ o, m });
  const ended = new AbortController();
  let by: (typeof ENDING)[number] | undefined;
  const onSignal = (s: (typeof ENDING)[number]): void => {
    // A second one ends the connection too: a command that ignores SIGTERM keeps the channel
    // open (sshd closes it when the command exits), and rum would wait for it.
    if (by) void session.close();
    by ??= s;
    ended.abort();
  };
  for (const s of ENDING) process.on(s, onSignal);
  try {
    // Each word quoted: the guest's shell sees exactly this argv.
    const r = await session.exec(argv.map(shellQuote).join(' '), {
      stdout: process.stdout,
      stderr: process.stderr,
      signal: ended.signal,
      ...(process.stdin.isTTY ? {} : { stdin: process.stdin }),
    });
    if (r.code === null) throw new RumError('SSH', `the command was ended by ${r.signal ?? 'a signal'}`);
    return r.code;
  } catch (err) {
    if (by) return 128 + constants.signals[by]; // as a shell reports a command ended by a signal
    throw err;
  } finally {
    for (const s of ENDING) process.off(s, onSignal);
    await session.close();
  }
}
