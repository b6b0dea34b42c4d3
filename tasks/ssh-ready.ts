// Owns: the guest answering over SSH: an address, the pinned host key, a login with the VM's
// key, and cloud-init done with what the user asked for. Checked every run (user networking:
// QEMU's forward listens; nat: a TCP connect); rebuilt after each start.
import { readFile } from 'node:fs/promises';
import { RumError } from '../src/errors.js';
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import { cloudInitErrors, workAfterSshd } from '../src/cloudinit/modules.js';
import { listensOnLoopback, tcpOpen } from '../src/net/port-probe.js';
import { macFor, virsh, type RumCtx } from './context.js';

export interface SshAddress {
  host: string;
  port: number;
}

/**
 * The guest's address on its libvirt network: the newest IPv4 lease for its MAC. A VM made again
 * under the same name has the same MAC, and dnsmasq keeps the old leases (the guest's client id
 * is new each first boot), so "the first lease" can be a dead address (found by the NAT e2e).
 */
async function currentLease(ctx: RumCtx): Promise<string | undefined> {
  const leases = await virsh(ctx).netDhcpLeases(ctx.config.network.name, macFor(ctx.config.name, digestOf));
  const v4 = (leases ?? []).filter((l) => l.protocol === 'ipv4');
  // 'YYYY-MM-DD HH:MM:SS' sorts as text; the latest expiry is the latest lease.
  return v4.sort((a, b) => (a.expiry < b.expiry ? 1 : a.expiry > b.expiry ? -1 : 0))[0]?.address;
}

/** The guest stopped or paused while rum waited: said at once, with libvirt's reason. */
async function guestGone(ctx: RumCtx): Promise<Error | undefined> {
  const state = await virsh(ctx).domainState(ctx.config.name);
  if (state === 'running' || state === 'in shutdown' || state === 'idle') return undefined;
  if (state === 'paused') {
    const { pausedWhy } = await import('./running-domain.js');
    const p = await pausedWhy(ctx);
    return new RumError('FAILED', `the guest stopped running while rum waited for it: ${p.why}`, p.hint);
  }
  return new RumError('FAILED', `the guest is ${state ?? 'no longer defined'}: it stopped while rum waited for it`, `the guest's console: ${ctx.vm.path('console')}; then \`rum up\``);
}

// A login means cloud-init's first stages are done: sshd starts after them, and they create the
// user, pin the host key, write files and mount the shares. Its later stages run only what the
// user asked for (src/cloudinit/modules.ts); when they have work, `up` waits for result.json,
// which cloud-init writes under /run (so: for this boot) when its last stage ends. In sh, not
// `cloud-init status --wait`: that would start cloud-init's Python a second time (about 3 s
// under TCG) just as the guest's own final stage starts.
const WAIT_CLOUD_INIT = 'i=0; while [ ! -s /run/cloud-init/result.json ]; do i=$((i+1)); [ $i -le 6000 ] || exit 124; sleep 0.1; done; cat /run/cloud-init/result.json';
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
  deps: ['running-domain'],
  after: ['ssh-keys', 'ssh-port'],
  inputs: ({ config: c }: RumCtx) => ({
    'ssh.user': c.ssh.user,
    'network.mode': c.network.mode,
    'provision (after sshd)': workAfterSshd({ packages: c.provision.packages, aptSources: c.provision.apt_sources, system: c.provision.system, boot: c.provision.boot }),
  }),
  build: async ({ ctx, inputs, upstream, progress, signal }) => {
    const [{ waitReady, SshError }, { writeKnownHosts }] = await Promise.all([import('../src/ssh/connect.js'), import('../src/ssh/known-hosts.js')]);
    const { config, vm } = ctx;
    const port = (upstream('ssh-port').data as { port: number }).port;
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
        getAddress: () => currentLease(ctx),
        guestGone: () => guestGone(ctx),
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
      throw new RumError('FAILED', `the guest is up, but cloud-init reported an error: ${errors[0]}${more}`, 'see `rum logs` and `rum logs --provision`; fix rum.yaml and run `rum up --reset` or `rum provision`');
    }
    const host = ready.session.target.host; // the address that really answered
    await ready.session.close();
    await writeKnownHosts(vm.path('knownHosts'), { host, port, alias: `rum-${config.name}`, hostKey });
    return { digest: digestOf(`${host}:${port}`), data: { host, port } };
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
