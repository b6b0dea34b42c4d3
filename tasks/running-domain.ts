// Owns: the domain running. Started when it is not; a running guest whose definition changed
// is restarted only with --restart, never by surprise. How to start, resume and stop it is the
// machine's (src/machine/machine.ts).
import { digestOf, type Digest } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import type { RumCtx } from './context.js';
import { definedDomain } from './defined-domain.js';
import { overlay } from './overlay.js';
import { projectNetwork } from './project-network.js';
import { seedIso } from './seed-iso.js';
import { restoredInput } from './snapshots.js';

/** How the guest came to run: `resumed` from saved or paused memory (its clock is behind, its
 * shares unmounted), or booted. */
export type Started = { resumed: boolean };

export const runningDomain = defineRule({
  id: 'running-domain',
  kind: 'effect',
  version: 2, // 2: resources.disk is applied here
  deps: [definedDomain],
  after: [overlay, seedIso, projectNetwork],
  verbs: { build: 'start', rebuild: 'restart' },
  restartGuard: true,
  // The disk grows only while the guest is off: a bigger resources.disk waits for the next start.
  // A restored snapshot is a different disk: the guest boots from it afresh.
  inputs: async (c: RumCtx) => ({ 'resources.disk': c.config.resources.disk, ...(await restoredInput(c)) }),
  build: async ({ ctx: { machine }, upstream, action, progress, notice }): Promise<{ digest: Digest; data: Started }> => {
    // Each start is a new boot: its identity tells ssh-ready to wait for the guest again.
    const boot = (resumed: boolean) => ({ digest: digestOf(`${upstream(definedDomain).digest}:${Date.now()}`), data: { resumed } });
    const state = (await machine.domainFacts()).state;
    // Paused (e.g. by a full disk): resumed, never started (libvirt: already active) nor resized.
    if (action !== 'restart' && state === 'paused') {
      notice(`resuming the guest: ${(await machine.pausedWhy()).why}`);
      await machine.resume();
      return boot(true);
    }
    if (action === 'resume' && state === 'suspended') {
      progress('restoring the guest from its saved memory');
      await machine.start(notice);
      return boot(true);
    }
    // Saved memory belongs to the definition it was saved with: restoring it onto another would
    // run the old one. `up` asked (or was told -y) before getting here.
    if (state === 'suspended') {
      notice('its definition changed since `rum suspend`: the saved memory is discarded and the guest boots');
      await machine.discardSaved();
    }
    if (action === 'restart') {
      progress('shutting the guest down to apply its new definition');
      await machine.stop({ timeoutMs: 60_000, force: true, progress });
    }
    await machine.start(notice);
    return boot(false);
  },
  check: async ({ ctx }) => {
    const s = (await ctx.machine.domainFacts()).state;
    if (s === 'running') return { ok: true };
    if (s === 'suspended') return { ok: false, why: 'the guest is suspended (`rum suspend`)', action: 'resume' };
    if (s === 'paused') return { ok: false, why: 'the guest is paused', action: 'resume' };
    return { ok: false, why: `the domain is ${s ?? 'not defined'}` };
  },
});
