// Bundles the CLI into a few ESM chunks: Node spends most of a fast command's time resolving and
// linking hundreds of small module files, not running them. Code splitting keeps every
// `await import()` a separate chunk, loaded only by the commands that use it.
//
// Every dependency is bundled, so the published package has no dependencies of its own: an
// install fetches nothing, runs no install script and builds nothing. ssh2's native crypto
// binding and cpu-features are left out on purpose: ssh2 loads both inside try/catch and falls
// back to Node's own crypto (AES-GCM first, as with the binding), so no machine needs a compiler.
import { build } from 'esbuild';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
rmSync('dist/bundle', { recursive: true, force: true }); // chunk names change: no stale ones
const result = await build({
  // The SSH control master runs as its own process (src/ssh/control.ts).
  entryPoints: { main: 'src/cli/main.ts', 'control-master': 'src/ssh/control-master.ts' },
  outdir: 'dist/bundle',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  metafile: true,
  plugins: [
    {
      name: 'optional-native',
      setup(b) {
        // Resolved at run time from the chunk's directory, where they never are: ssh2 catches it.
        b.onResolve({ filter: /(\.node$|^cpu-features$)/ }, (args) => ({ path: args.path, external: true }));
      },
    },
  ],
  define: { RUM_VERSION: JSON.stringify(version) },
  // Bundled CommonJS dependencies may call require() and read __dirname (ssh2's poly1305 module
  // does): give every ESM chunk both.
  banner: {
    js: [
      "import { createRequire as __rumCreateRequire } from 'node:module';",
      "import { fileURLToPath as __rumFileURLToPath } from 'node:url';",
      'const require = __rumCreateRequire(import.meta.url);',
      "const __dirname = __rumFileURLToPath(new URL('.', import.meta.url)).replace(/\\/$/, '');",
    ].join(' '),
  },
  legalComments: 'none', // the notices go whole into THIRD-PARTY-LICENSES below
  logLevel: 'warning',
});

// The licenses of what the bundle carries: every package a bundled file came from.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (!m || packages.has(m[1])) continue;
  const pkg = JSON.parse(readFileSync(join(m[1], 'package.json'), 'utf8'));
  const file = readdirSync(m[1]).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
  const text = file ? readFileSync(join(m[1], file), 'utf8').trim() : `License: ${pkg.license ?? pkg.licenses?.[0]?.type ?? 'see the package'}`;
  packages.set(m[1], `${pkg.name}@${pkg.version} (${pkg.license ?? pkg.licenses?.[0]?.type ?? 'unknown'})\n\n${text}\n`);
}
const notices = [...packages.values()].sort();
writeFileSync(
  'dist/bundle/THIRD-PARTY-LICENSES.txt',
  `rum's bundle includes the following packages.\n\n${notices.join(`\n${'-'.repeat(72)}\n\n`)}`,
);
