#!/usr/bin/env -S RUM_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} NODE_EXTRA_CA_CERTS= node
// The line above: Node parses every certificate NODE_EXTRA_CA_CERTS names before any code runs
// (~45 ms of each command on a 2-core machine); rum needs them only for an https download, so
// it keeps the name aside and src/net/extra-ca.ts loads them then.
// Runs the bundled CLI (make build: dist/bundle, quicker to load), or the plain tsc output when
// that is newer (a tsc-only build during development must never run a stale bundle).
import { statSync } from 'node:fs';

const mtime = (rel) => {
  try {
    return statSync(new URL(rel, import.meta.url)).mtimeMs;
  } catch {
    return -1;
  }
};
const bundle = mtime('../dist/bundle/main.js');
// tsc rewrites its build info on every build that emits anything (main.js only when it changed).
await import(bundle >= 0 && bundle >= mtime('../dist/.tsbuildinfo') ? '../dist/bundle/main.js' : '../dist/src/cli/main.js');
