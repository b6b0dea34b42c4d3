// Bundles the CLI into a few ESM chunks: Node spends most of a fast command's time resolving and
// linking hundreds of small module files, not running them. Code splitting keeps every
// `await import()` a separate chunk, loaded only by the commands that use it.
import { build } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
rmSync('dist/bundle', { recursive: true, force: true }); // chunk names change: no stale ones
await build({
  // The SSH control master runs as its own process (src/ssh/control.ts).
  entryPoints: { main: 'src/cli/main.ts', 'control-master': 'src/ssh/control-master.ts' },
  outdir: 'dist/bundle',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  // ssh2 loads optional native bindings at run time; bundling would cut them off.
  external: ['ssh2', 'cpu-features'],
  define: { RUM_VERSION: JSON.stringify(version) },
  // Bundled CommonJS dependencies may call require(): give ESM chunks one.
  banner: { js: "import { createRequire as __rumCreateRequire } from 'node:module'; const require = __rumCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
