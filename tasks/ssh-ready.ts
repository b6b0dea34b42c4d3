// Owns: the guest answering over SSH: an address, the pinned host key, a login with the VM's
// key, and cloud-init done with what the user asked for. Checked every run (user networking:
// QEMU's forward listens; nat: a TCP connect); rebuilt after each start.
import { readFile } from 'node:fs/promises';
import { RumError } from '../src/errors.js';
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import { cloudInitErrors, workAfterSshd } from '../src/cloudinit/modules.js';
import { WarmBootPaths } from '../src/cloudinit/warm-boot.js';
import { listensOnLoopback, tcpOpen } from '../src/net/port-probe.js';
import type { RumCtx } from './context.js';
import { bootAptSources } from './user-data.js';
import { runningDomain, type Started } from './running-domain.js';
import { sshKeys } from './ssh-keys.js';
import { sshPort } from './ssh-port.js';

/** Where the guest answers over SSH: what `exec`, `ssh`, `cp` and `status` read. */
export type SshAddress = { host: string; port: number };

// A login means cloud-init's first stages are done: sshd starts after them, and they create the
// user, pin the host key, write files and mount the shares. Its later stages run only what the
// user asked for (src/cloudinit/modules.ts); when they have work, `up` waits for result.json,
// which cloud-init writes under /run (so: for this boot) when its last stage ends. On a warm
// boot cloud-init is skipped and rum-boot.service writes its own result.json, in the same shape,
// once the per-boot scripts ran (src/cloudinit/warm-boot.ts). In sh, not `cloud-init status
// --wait`: that would start cloud-init's Python a second time (about 3 s under TCG) just as the
// guest's own final stage starts.
const WAIT_CLOUD_INIT = `i=0; while [ ! -s /run/cloud-init/result.json ] && [ ! -s ${WarmBootPaths.result} ]; do i=$((i+1)); [ $i -le 6000 ] || exit 124; sleep 0.1; done; cat /run/cloud-init/result.json 2>/dev/null || cat ${WarmBootPaths.result}`;
// Nothing left to wait for: only the errors of the stages so far.
const CLOUD_INIT_SO_FAR = 'cat /run/cloud-init/status.json 2>/dev/null; true';

/** Under TCG a cold boot with packages takes minutes; RUM_BOOT_TIMEOUT (seconds) overrides. */
const bootTimeoutMs = (env: NodeJS.ProcessEnv) => Number(env.RUM_BOOT_TIMEOUT ?? 600) * 1000;

/** The address a record holds, if it holds one: a damaged record's data is only an object. */
function recordedAddress(data: unknown): SshAddress | undefined {
  const a = data as Partial<SshAddress> | undefined;
  return typeof a?.host === 'string' && typeof a.port === 'number' && Number.isInteger(a.port) ? { host: a.host, port: a.port } : undefined;
}

export const sshReady = defineRule({
  id: 'ssh-ready',
  kind: 'effect',
  version: 1,
  deps: [runningDomain],
  after: [sshKeys, sshPort],
  inputs: (ctx: RumCtx) => ({
    'ssh.user': ctx.config.ssh.user,
    'network.mode': ctx.config.network.mode,
    'provision (after sshd)': workAfterSshd({ aptSources: bootAptSources(ctx), system: ctx.config.provision.system, boot: ctx.config.provision.boot }),
  }),
  build: async ({ ctx, inputs, upstream, progress, signal }) => {
    const [{ waitReady, SshError }, { writeKnownHosts }] = await Promise.all([import('../src/ssh/connect.js'), import('../src/ssh/known-hosts.js')]);
    const { config, vm } = ctx;
    const { port } = upstream(sshPort).data;
    const mode = config.network.mode;
    const hostKey = (await readFile(vm.path('hostPub'), 'utf8')).trim();
    // user networking: the 127.0.0.1 forward; nat: the address of the guest's DHCP lease.
    const userHost = mode === 'user' ? '127.0.0.1' : undefined;
    const waits = inputs['provision (after sshd)'];

    const ready = await waitReady(
      { host: userHost, port, user: config.ssh.user, privateKey: await readFile(vm.path('clientKey')), hostKey },
      {
        timeoutMs: bootTimeoutMs(ctx.env),
        signal,
        command: waits ? WAIT_CLOUD_INIT : CLOUD_INIT_SO_FAR,
        getAddress: () => ctx.machine.lease(),
        guestGone: () => ctx.machine.gone(),
        onStage: (stage, detail) => progress(stage === 'cloud-init' ? (waits ? 'waiting for cloud-init to finish provisioning' : 'checking cloud-init') : `waiting for ${stage}${detail ? ` (${detail})` : ''}`),
      },
    ).catch((err: unknown) => {
      if (err instanceof SshError && err.kind === 'command-failed')
        throw new RumError('FAILED', `the guest is up, but waiting for cloud-init failed: ${err.message}`, `the guest's console: ${vm.path('console')}`, { cause: err });
      if (err instanceof RumError && !err.hint) throw new RumError(err.code, err.message, `the guest's console: ${vm.path('console')}`, { cause: err });
      throw err;
    });
    const errors = cloudInitErrors(ready.command?.stdout ?? '');
    if (errors.length > 0) {
      await ready.session.close();
      const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : '';
      const who = errors[0]!.startsWith('rum-boot.service') ? 'its warm boot' : 'cloud-init'; // warm-boot.ts
      throw new RumError('FAILED', `the guest is up, but ${who} reported an error: ${errors[0]}${more}`, 'see `rum logs` and `rum logs --provision`; fix rum.yaml and run `rum up --reset` or `rum provision`');
    }
    // Restored from saved memory: its clock stopped while it was saved, and its 9p shares were
    // unmounted for the save (src/cli/commands/suspend.ts). Set and mounted again, now.
    if ((upstream(runningDomain).data as Partial<Started> | undefined)?.resumed) {
      progress('setting the guest clock and mounting its shares again');
      await ready.session.execText(`sudo -n date -u -s @${(Date.now() / 1000).toFixed(3)} >/dev/null; sudo -n mount -a -t 9p 2>/dev/null; true`);
    }
    const host = ready.session.target.host; // the address that really answered
    await ready.session.close();
    await writeKnownHosts(vm.path('knownHosts'), { host, port, alias: `rum-${config.name}`, hostKey });
    const address: SshAddress = { host, port };
    return { digest: digestOf(`${host}:${port}`), data: address };
  },
  check: async ({ ctx, previous }) => {
    const a = recordedAddress(previous?.data);
    if (!a) return { ok: false, why: 'no address recorded' };
    // user networking: the address is QEMU's own forward, which accepts a connection whether or
    // not the guest's sshd would. Asking the kernel whether it listens tells as much without
    // making the guest's sshd fork and re-exec, work that under TCG takes the host's CPU from
    // the next command (measured: back-to-back `rum status` 148-160 -> 133 ms).
    if (ctx.config.network.mode === 'user') {
      const listens = await listensOnLoopback(a.port);
      if (listens !== undefined) return listens ? { ok: true } : { ok: false, why: `nothing listens on ${a.host}:${a.port}` };
    }
    return (await tcpOpen(a.host, a.port, 1000)) ? { ok: true } : { ok: false, why: `nothing answers on ${a.host}:${a.port}` };
  },
});
