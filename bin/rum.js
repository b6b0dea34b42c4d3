#!/usr/bin/env node
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
