// The control master's process (see control.ts): its config arrives as JSON on stdin, its one-line
// report leaves on stdout, and then it serves detached until its connection or its socket ends.
import { runMaster, type MasterConfig } from './control.js';

let text = '';
for await (const chunk of process.stdin) text += String(chunk);
await runMaster(JSON.parse(text) as MasterConfig, (r) => {
  process.stdout.write(`${JSON.stringify(r)}\n`);
  process.stdout.end();
});
