#!/usr/bin/env node
// Runs the bundled CLI (make build: dist/bundle, quicker to load), or the plain tsc output when
// that is newer (a tsc-only build during development must never run a stale bundle).
// Users start rum through bin/rum, which also keeps NODE_EXTRA_CA_CERTS from slowing start-up.
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 19)) {
  process.stderr.write(`rum: Node.js ${process.versions.node} is too old: rum needs 20.19 or newer\nhint: install a newer Node.js (a version manager, or your distribution's newer release)\n`);
  process.exit(1);
}

const mtime = (rel) => {
  try {
    return statSync(new URL(rel, import.meta.url)).mtimeMs;
  } catch {
    return -1;
  }
};
const bundle = mtime('../dist/bundle/main.js');
const plain = mtime('../dist/src/cli/main.js');
if (bundle < 0 && plain < 0) {
  // A checkout that was never built (the package from npm pack always holds the bundle).
  const root = fileURLToPath(new URL('..', import.meta.url));
  process.stderr.write(`rum: ${root} holds no build of rum\nhint: run \`npm ci && npm run build\` there\n`);
  process.exit(1);
}
// tsc rewrites its build info on every build that emits anything (main.js only when it changed).
await import(bundle >= 0 && bundle >= mtime('../dist/.tsbuildinfo') ? '../dist/bundle/main.js' : '../dist/src/cli/main.js');
