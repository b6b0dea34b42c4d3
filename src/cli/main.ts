// The CLI's edge: parse, run one command, render any error once, set the exit status.
// Nothing else in rum prints a failure or exits.
import { program } from './program.js';
import { Output } from './output.js';
import { takeDeferredCa } from '../net/extra-ca.js';

takeDeferredCa();

const json = process.argv.includes('--json');
// `rum graph | head`: a reader that stops early is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});
try {
  const parsed = program.parse(process.argv, { lazy: true });
  if (parsed) {
    const status: unknown = await parsed.handler(...parsed.args);
    if (typeof status === 'number') process.exitCode = status;
  }
} catch (err) {
  process.exitCode = await new Output({ json }).error(err);
}
