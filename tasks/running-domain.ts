// Owns: the domain running. Started when it is not; a running guest whose definition changed
// is restarted only with --restart, never by surprise.
import { mkdir, open, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { RumError } from '../src/errors.js';
import { seeDoctor } from '../src/host/check.js';
import { shellQuote } from '../src/ssh/openssh.js';
import { grantQemu, keepsOwners } from '../src/host/qemu-reach.js';
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import { domainFacts, forgetDomainFacts, virsh, type RumCtx } from './context.js';

/** NAT needs its libvirt network: an inactive one is started, a missing one is an error. */
async function ensureNetwork(ctx: RumCtx, notice: (m: string) => void): Promise<void> {
  if (ctx.config.network.mode !== 'nat') return;
  const v = virsh(ctx);
  const name = ctx.config.network.name;
  const info = await v.netInfo(name);
  if (!info)
    throw new RumError(
      'LIBVIRT',
      `libvirt has no network "${name}" on ${ctx.config.libvirt.uri}`,
      (name === 'default'
        ? `define it: virsh --connect ${shellQuote(ctx.config.libvirt.uri)} net-define /usr/share/libvirt/networks/default.xml, then net-autostart default; or use network.mode: user`
        : 'create it with virsh net-define, or set network.name / network.mode: user') + seeDoctor('network'),
    );
  if (!info.active) {
    notice(`starting libvirt network ${name}`);
    await v.netStart(name);
  }
}

/**
 * virtlogd (root) appends to the console log, and would create it as root's: made here first,
 * the file is the user's. One a root virtlogd made before is replaced (the directory is ours).
 */
async function ownConsoleLog(path: string): Promise<void> {
  const make = async () => (await open(path, 'a', 0o600)).close();
  await make().catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EACCES') throw err;
    await rm(path, { force: true });
    await make();
  });
}

export async function stopDomain(ctx: RumCtx, opts: { timeoutMs: number; force: boolean; progress?: (m: string) => void }): Promise<'stopped' | 'timeout' | 'not-running'> {
  const v = virsh(ctx);
  const name = ctx.config.name;
  if ((await v.shutdown(name)) === 'not-running') return 'not-running';
  const deadline = Date.now() + opts.timeoutMs;
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    opts.progress?.(`waiting for the guest to power off (${Math.ceil((deadline - Date.now()) / 1000)} s left)`);
    const s = await v.domainState(name);
    if (s === undefined || s === 'shut off' || s === 'crashed') {
      forgetDomainFacts(ctx);
      return 'stopped';
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  if (!opts.force) return 'timeout';
  await v.destroy(name);
  forgetDomainFacts(ctx);
  return 'stopped';
}

/** Why a paused guest is paused, and what to do: QEMU pauses a guest whose disk cannot be
 * written (the VM directory's filesystem full). ssh-ready asks this while it waits. */
export async function pausedWhy(ctx: RumCtx): Promise<{ why: string; hint: string }> {
  const reason = await virsh(ctx).stateReason(ctx.config.name);
  return {
    why: `libvirt paused it${reason ? ` (${reason})` : ''}`,
    hint:
      reason === 'I/O error'
        ? `its disk ${ctx.vm.path('overlay')} could not be written: make room on that filesystem (df -h ${shellQuote(ctx.vm.dir)}), then \`rum up\` resumes it`
        : '`rum up` resumes it',
  };
}

/** qemu-img resize up to resources.disk (the guest's growpart does the rest); never shrinks. */
async function growDisk(ctx: RumCtx, notice: (m: string) => void): Promise<void> {
  const { imageInfo, resize } = await import('../src/image/qemu-img.js');
  const have = (await imageInfo(ctx.vm.path('overlay'))).virtualSize;
  const want = ctx.config.resources.disk;
  if (want > have) {
    notice(`growing the disk from ${have} to ${want} bytes`);
    await resize(ctx.vm.path('overlay'), want);
  } else if (want < have) {
    notice(`resources.disk is below the disk's size (${have} bytes): disks never shrink; \`rum up --reset\` makes a new one`);
  }
}

export const runningDomain = defineRule({
  id: 'running-domain',
  kind: 'effect',
  version: 2, // 2: resources.disk is applied here
  deps: ['defined-domain'],
  after: ['overlay', 'seed-iso'],
  verbs: { build: 'start', rebuild: 'restart' },
  restartGuard: true,
  // The disk grows only while the guest is off: a bigger resources.disk waits for the next start.
  inputs: (c: RumCtx) => ({ 'resources.disk': c.config.resources.disk }),
  build: async ({ ctx, upstream, action, progress, notice }) => {
    const v = virsh(ctx);
    // Paused (e.g. by a full disk): resumed, never started (libvirt: already active) nor resized.
    if (action !== 'restart' && (await domainFacts(ctx)).state === 'paused') {
      notice(`resuming the guest: ${(await pausedWhy(ctx)).why}`);
      await v.resume(ctx.config.name);
      forgetDomainFacts(ctx);
      return { digest: digestOf(`${upstream('defined-domain').digest}:${Date.now()}`) };
    }
    if (action === 'restart') {
      progress('shutting the guest down to apply its new definition');
      await stopDomain(ctx, { timeoutMs: 60_000, force: true, progress });
    }
    await growDisk(ctx, notice);
    await ensureNetwork(ctx, notice);
    await mkdir(dirname(ctx.vm.path('console')), { recursive: true });
    await ownConsoleLog(ctx.vm.path('console'));
    // The disk files stay the user's (see keepsOwners): QEMU's user is let in by an ACL, set at
    // every start because --reset and a new seed make new files.
    if (keepsOwners(ctx.config.libvirt.uri, ctx.env))
      await grantQemu(ctx.config.libvirt.uri, [{ path: ctx.vm.path('overlay'), write: true }, { path: ctx.vm.path('seedIso'), write: false }]);
    await v.start(ctx.config.name);
    forgetDomainFacts(ctx);
    // Each start is a new boot: its identity tells ssh-ready to wait for the guest again.
    return { digest: digestOf(`${upstream('defined-domain').digest}:${Date.now()}`) };
  },
  check: async ({ ctx }) => {
    const s = (await domainFacts(ctx)).state;
    return s === 'running' ? { ok: true } : { ok: false, why: `the domain is ${s ?? 'not defined'}` };
  },
});
