// Owns: the domain running. Started when it is not; a running guest whose definition changed
// is restarted only with --restart, never by surprise. How to start, resume and stop it is the
// machine's (src/machine/machine.ts).
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import type { RumCtx } from './context.js';
import { definedDomain } from './defined-domain.js';
import { overlay } from './overlay.js';
import { projectNetwork } from './project-network.js';
import { seedIso } from './seed-iso.js';

export const runningDomain = defineRule({
  id: 'running-domain',
  kind: 'effect',
  version: 2, // 2: resources.disk is applied here
  deps: [definedDomain],
  after: [overlay, seedIso, projectNetwork],
  verbs: { build: 'start', rebuild: 'restart' },
  restartGuard: true,
  // The disk grows only while the guest is off: a bigger resources.disk waits for the next start.
  inputs: (c: RumCtx) => ({ 'resources.disk': c.config.resources.disk }),
  build: async ({ ctx: { machine }, upstream, action, progress, notice }) => {
    // Each start is a new boot: its identity tells ssh-ready to wait for the guest again.
    const boot = () => ({ digest: digestOf(`${upstream(definedDomain).digest}:${Date.now()}`) });
    // Paused (e.g. by a full disk): resumed, never started (libvirt: already active) nor resized.
    if (action !== 'restart' && (await machine.domainFacts()).state === 'paused') {
      notice(`resuming the guest: ${(await machine.pausedWhy()).why}`);
      await machine.resume();
      return boot();
    }
    if (action === 'restart') {
      progress('shutting the guest down to apply its new definition');
      await machine.stop({ timeoutMs: 60_000, force: true, progress });
    }
    await machine.start(notice);
    return boot();
  },
  check: async ({ ctx }) => {
    const s = (await ctx.machine.domainFacts()).state;
    return s === 'running' ? { ok: true } : { ok: false, why: `the domain is ${s ?? 'not defined'}` };
  },
});
