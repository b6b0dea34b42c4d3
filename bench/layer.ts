// Provisioned-layer figures for make bench, in the sandboxed environment: `rum up --reset` of a VM
// with packages when its layer is cached, beside the same reset of a VM with no packages at all
// (the floor: a fresh first boot with nothing to install) and the reset when the layer must be
// built first (the cache emptied: what every reset cost before layers, and more).
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchVm, root, type Add } from './sandbox-vm.js';

const ROUNDS = 3;
const BUILD_ROUNDS = 2; // each builds a layer: minutes under TCG

/** The in-namespace apt repository as a guest on user networking reaches it (test/e2e/env.sh). */
function slirpRepo(): string {
  const rec = readFileSync('/run/rum-test/env', 'utf8');
  return /^RUM_TEST_REPO_SLIRP=(.*)$/m.exec(rec)?.[1] ?? 'http://10.0.2.2:8080';
}

export async function layerBench(add: Add, mirror: string, median: (xs: number[]) => number, rum = process.env.RUM_BENCH_BIN ?? join(root, 'bin/rum')): Promise<void> {
  console.error('rum bench: provisioned layers (1G guests, 2 cpus, user networking; package inotify-tools from the local repository)');
  const plain = benchVm('rumtest-blayer0', mirror, rum);
  const pkgs = benchVm('rumtest-blayer1', mirror, rum, {
    cache: plain.work,
    extra: { provision: { packages: ['inotify-tools'], apt_sources: [`deb [trusted=yes] ${slirpRepo()} ./`] } },
  });
  const s = (xs: number[]) => xs.map((x) => (x / 1000).toFixed(1)).join(', ');
  try {
    plain.timed('up');
    pkgs.timed('up'); // builds the layer once
    const floors: number[] = [];
    const cached: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      floors.push(plain.timed('up', '--reset', '-y').ms);
      cached.push(pkgs.timed('up', '--reset', '-y').ms);
    }
    plain.timed('destroy', '-y'); // its cores for the builds below
    const builds: number[] = [];
    for (let i = 0; i < BUILD_ROUNDS; i++) {
      rmSync(join(plain.work, 'cache/rum/images/layers'), { recursive: true, force: true });
      builds.push(pkgs.timed('up', '--reset', '-y').ms);
    }
    const [floor, hit, miss] = [floors, cached, builds].map((xs) => median(xs) / 1000) as [number, number, number];
    console.error(`rum bench: layers: no packages ${s(floors)} s, cached layer ${s(cached)} s, layer built ${s(builds)} s`);
    add(
      '`rum up --reset` of a VM with packages, layer cached (to SSH-ready, provisioned)',
      `${hit.toFixed(1)} s`,
      `the same reset with no packages: ${floor.toFixed(1)} s (${(hit / floor).toFixed(2)}x); with the layer built first: ${miss.toFixed(1)} s (${(miss / floor).toFixed(2)}x)`,
      '≤ 1.1x no packages',
    );
  } finally {
    pkgs.close();
    plain.close();
  }
}

// Alone: node dist/bench/layer.js (the e2e environment running).
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const mirror = execFileSync(join(root, 'test/e2e/image-mirror.sh'), ['start'], { encoding: 'utf8' }).trim();
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  await layerBench((what, fig, base, target) => console.log(`| ${what} | ${fig} | ${base} | ${target} |`), mirror, median);
}
