// make bench: rum's speed, each figure a median over repeated runs printed beside a baseline
// measured in the same run. VM figures need the sandboxed environment (test/e2e/env.sh); they
// are skipped, and say so, when it is not up.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, openSync, closeSync, writeSync, existsSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

const root = fileURLToPath(new URL('../../', import.meta.url));
const rum = join(root, 'bin/rum');
const rows: { what: string; rum: string; baseline: string; target: string }[] = [];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Wall time of a command, median of `runs` after `warmup` unmeasured runs, in ms. */
function time(cmd: string[], opts: { runs?: number; warmup?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {}): number {
  const runs = opts.runs ?? 15;
  const xs: number[] = [];
  for (let i = 0; i < (opts.warmup ?? 2) + runs; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(cmd[0]!, cmd.slice(1), { cwd: opts.cwd, env: opts.env ?? process.env, stdio: 'ignore' });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== 0 && r.status !== 10) throw new Error(`${cmd.join(' ')} exited ${r.status}`);
    if (i >= (opts.warmup ?? 2)) xs.push(ms);
  }
  return median(xs);
}

const ms = (x: number) => `${x.toFixed(1)} ms`;

/** `node -e 0`, and without NODE_EXTRA_CA_CERTS when it is set (Node parses those certificates
 * at start-up; rum's launcher defers them): measured once, quoted beside each fast command. */
let nodeFigures: string | undefined;
function nodeBaseline(): string {
  if (nodeFigures === undefined) {
    nodeFigures = `node -e 0: ${ms(time([process.execPath, '-e', '0']))}`;
    if (process.env.NODE_EXTRA_CA_CERTS) {
      const bare = { ...process.env };
      delete bare.NODE_EXTRA_CA_CERTS;
      nodeFigures += ` (${ms(time([process.execPath, '-e', '0'], { env: bare }))} without NODE_EXTRA_CA_CERTS)`;
    }
  }
  return nodeFigures;
}
const add = (what: string, rumFig: string, baseline: string, target: string) => {
  rows.push({ what, rum: rumFig, baseline, target });
  console.error(`  ${what}: ${rumFig} (baseline ${baseline}; target ${target})`);
};

const work = mkdtempSync(join(tmpdir(), 'rum-bench-'));
const env = { ...process.env, XDG_DATA_HOME: join(work, 'data'), XDG_CACHE_HOME: join(work, 'cache'), NO_COLOR: '1' };
try {
  console.error('rum bench: start-up and planning');
  const proj = join(work, 'proj');
  mkdirSync(proj);
  writeFileSync(join(proj, 'rum.yaml'), stringify({ image: { base: 'debian-12' }, provision: { packages: ['git'], system: 'echo hi' } }));
  execFileSync(rum, ['build', 'seed-iso'], { cwd: proj, env, stdio: 'ignore' });
  // rum runs by its path, as a user runs it: its #! line is part of its start-up.
  add('`rum graph` (seed built, no VM)', ms(time([rum, 'graph'], { cwd: proj, env })), nodeBaseline(), '≤ 120 ms');
  add('`rum up --dry-run` (seed built, no VM)', ms(time([rum, 'up', '--dry-run'], { cwd: proj, env })), nodeBaseline(), '≤ 120 ms');

  console.error('rum bench: seed ISO');
  const iso = await import('../src/iso/iso9660.js');
  const vmDir = join(env.XDG_DATA_HOME, 'rum', 'proj');
  const files = ['meta-data', 'user-data'].map((name) => ({ name, data: readFileSync(join(vmDir, name)) }));
  const isoTimes: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t0 = process.hrtime.bigint();
    iso.buildIso({ volumeId: 'cidata', files });
    isoTimes.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const genisoimage = time(['genisoimage', '-quiet', '-o', join(work, 'g.iso'), '-volid', 'cidata', '-joliet', '-rock', ...files.map((f) => join(vmDir, f.name))], { runs: 15 });
  add('seed ISO generation', ms(median(isoTimes.slice(20))), `genisoimage process: ${ms(genisoimage)}`, '≤ 5 ms');

  console.error('rum bench: 2 GiB file digest');
  const big = join(work, 'big.img');
  const fd = openSync(big, 'w');
  const chunk = Buffer.alloc(64 * 2 ** 20);
  for (let i = 0; i < chunk.length; i += 4096) chunk.writeUInt32LE(i * 2654435761 >>> 0, i);
  for (let i = 0; i < 32; i++) writeSync(fd, chunk);
  closeSync(fd);
  const digestScript = join(root, 'dist/bench/digest-child.js');
  const runDigest = () => {
    const out = execFileSync(process.execPath, [digestScript, big, join(work, 'digests.json')], { encoding: 'utf8' });
    return JSON.parse(out) as { ms: number; readBytes: number };
  };
  runDigest(); // page cache warm
  rmSync(join(work, 'digests.json'), { force: true });
  const firsts: { ms: number; readBytes: number }[] = [];
  for (let i = 0; i < 5; i++) {
    rmSync(join(work, 'digests.json'), { force: true });
    firsts.push(runDigest());
  }
  const first = median(firsts.map((f) => f.ms));
  const later = runDigest();
  const xxh = time(['xxhsum', '-H64', big], { runs: 5, warmup: 1 });
  const sha = time(['sha256sum', big], { runs: 3, warmup: 0 });
  const gbps = (2 ** 31 / 1e9 / (first / 1000)).toFixed(2);
  add('digest 2 GiB, first run (page cache)', `${gbps} GB/s (${ms(first)})`, `xxhsum -H64: ${ms(xxh)}, sha256sum: ${ms(sha)}`, '≥ 1.5 GB/s');
  add('digest 2 GiB, later run', `${later.readBytes} bytes read (${ms(later.ms)})`, `first run read ${firsts[0]!.readBytes} bytes`, '0 bytes read');

  const vm = vmFigures();
  if (vm) await vm;
} finally {
  rmSync(work, { recursive: true, force: true });
}

function vmFigures(): Promise<void> | undefined {
  if (!existsSync('/run/netns/rumtest') || !existsSync('/run/libvirt/libvirt-sock')) {
    console.error('rum bench: VM figures SKIPPED: the sandboxed environment is not up (make env-start)');
    return undefined;
  }
  return import('./vm.js').then((m) => m.vmBench(add, { median, time, nodeBaseline }));
}

const machine = `${cpus().length} × ${cpus()[0]?.model.trim()}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
console.log(`\nmachine: ${machine}\n`);
console.log('| figure | rum | baseline (same run) | target |');
console.log('| --- | --- | --- | --- |');
const cell = (s: string) => s.replace(/\|/g, '\\|'); // `tar | ssh` inside a Markdown table cell
for (const r of rows) console.log(`| ${[r.what, r.rum, r.baseline, r.target].map(cell).join(' | ')} |`);
