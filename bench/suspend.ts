// The daily cycle's figures for make bench, in the sandboxed environment: `rum up` resuming a
// suspended guest beside a cold `rum up` of the same VM (image cached), `rum suspend` itself, and
// snapshot save and restore with the guest off.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { benchVm, type Add } from './sandbox-vm.js';

const ROUNDS = 3;
const SNAP_ROUNDS = 7;

export async function suspendBench(add: Add, mirror: string, median: (xs: number[]) => number): Promise<void> {
  console.error('rum bench: suspend and resume (one 1G guest, 2 cpus, user networking)');
  const vm = benchVm('rumtest-bsuspend', mirror);
  const timed = (...args: string[]) => vm.timed(...args).ms;
  try {
    timed('build', 'base-image');
    const colds: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      colds.push(timed('up'));
      if (i < ROUNDS - 1) timed('destroy', '-y');
    }
    timed('exec', '--', 'cloud-init', 'status', '--wait'); // at rest, as a day's work leaves it
    const saves: number[] = [];
    const resumes: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      saves.push(timed('suspend'));
      resumes.push(timed('up'));
    }
    const cold = median(colds) / 1000;
    const resume = median(resumes) / 1000;
    add('`rum up` of a suspended VM (resume)', `${resume.toFixed(1)} s`, `cold \`rum up\` of the same VM: ${cold.toFixed(1)} s (${(resume / cold).toFixed(2)}x)`, '≤ 0.1x');
    add('`rum suspend` of a running 1G guest', `${(median(saves) / 1000).toFixed(1)} s`, `cold \`rum up\`: ${cold.toFixed(1)} s`, 'reported');
    // Snapshots with the guest off, on the same VM: each beside the command's own fixed cost
    // (`rum snapshot list`: start-up, rum.yaml, the lock) and the file work's floor (qemu-img create).
    timed('down');
    const snapSaves: number[] = [];
    const snapRestores: number[] = [];
    const lists: number[] = [];
    const creates: number[] = [];
    const floor = join(vm.work, 'floor.qcow2');
    for (let i = 0; i < SNAP_ROUNDS; i++) {
      snapSaves.push(timed('snapshot', 'save', `s${i}`));
      snapRestores.push(timed('snapshot', 'restore', `s${i}`, '-y'));
      lists.push(timed('snapshot', 'list'));
      const t0 = performance.now();
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', join(vm.dataHome, 'rum/rumtest-bsuspend/disk.qcow2'), floor]);
      creates.push(performance.now() - t0);
      rmSync(floor);
    }
    const ms = (xs: number[]) => `${Math.round(median(xs))} ms`;
    const floors = `\`rum snapshot list\`: ${ms(lists)}; \`qemu-img create\` of an overlay: ${ms(creates)}`;
    add('`rum snapshot save`, guest off', ms(snapSaves), floors, '≤ 1 s');
    add('`rum snapshot restore -y`, guest off', ms(snapRestores), floors, '≤ 1 s');
  } finally {
    vm.close();
  }
}
