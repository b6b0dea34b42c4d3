// `rum watch`: replay host edits under the `inotify: true` mounts in the guest, so watchers there
// (vite, tsc --watch, cargo watch) fire: virtiofs and 9p deliver no events of their own for
// changes made on the host. Foreground until Ctrl-C; reconnects when the guest reboots.
import { assertNever, isRumError, RumError } from '../../errors.js';
import type { BridgeEvent } from '../../mounts/bridge.js';
import { guestTarget } from '../guest.js';
import { Output } from '../output.js';
import { oneMachine, type CommonOptions } from './common.js';

export async function watch(opts: CommonOptions): Promise<number> {
  const out = new Output(opts);
  const picked = await oneMachine(opts);
  const t = await guestTarget(picked);
  const wanted = t.m.config.mounts.filter((m) => m.inotify);
  if (wanted.length === 0) {
    throw new RumError('USAGE', 'no mount in rum.yaml has inotify: true', 'set inotify: true on the mounts whose changes watchers in the guest must see');
  }
  // The replay sets an mtime in the guest, which a read-only mount refuses (EROFS).
  for (const m of wanted.filter((m) => m.readonly)) out.notice(`${m.target} is read-only in the guest: its changes cannot be replayed there`);
  const mounts = wanted.filter((m) => !m.readonly);
  if (mounts.length === 0) {
    throw new RumError('USAGE', 'every mount with inotify: true is read-only', 'the guest must be able to set the mtime of a file: use readonly: false');
  }

  const [{ connect }, { startBridge }] = await Promise.all([import('../../ssh/connect.js'), import('../../mounts/bridge.js')]);
  // After the first connection, ask for the address again: a restarted guest may have a new one.
  let target: typeof t | undefined = t;
  const connectGuest = async () => {
    const to = target ?? (await guestTarget(picked));
    target = undefined;
    return connect(to);
  };
  const report = reporter(out);
  const bridge = await startBridge({
    mounts: mounts.map((m) => ({ hostPath: m.hostPath, guestPath: m.target, ignore: m.ignore })),
    connect: connectGuest,
    onEvent: report,
  });

  let onSignal: (() => void) | undefined;
  const stopped = new Promise<void>((resolve) => {
    onSignal = resolve;
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  try {
    await Promise.race([stopped, bridge.done]); // `done` rejects when the bridge gives up
  } finally {
    process.removeListener('SIGINT', onSignal!);
    process.removeListener('SIGTERM', onSignal!);
    await bridge.close();
  }
  const s = bridge.stats();
  if (out.json) out.out(JSON.stringify({ type: 'stats', ...s }));
  else out.info(`replayed ${plural(s.records, 'change')} in ${plural(s.batches, 'batch', 'batches')} (${plural(s.events, 'host event')}, ${plural(s.suppressed, 'echo', 'echoes')} of replays left alone)`);
  return 0;
}

/** Words the bridge's events, once: human lines on stderr, or one JSON object a line on stdout. */
function reporter(out: Output): (e: BridgeEvent) => void {
  const told = new Set<string>(); // each kind of replay failure is explained once
  return (e) => {
    if (out.json) return out.out(JSON.stringify(eventJson(e)));
    switch (e.type) {
      case 'ready':
        out.info(`watching ${plural(e.mounts, 'mount')}; host changes are replayed in the guest (Ctrl-C ends)`);
        return;
      case 'batch': {
        const shown = e.paths.length <= 3 ? `: ${e.paths.join(', ')}` : '';
        out.info(`replayed ${plural(e.records, 'change')} in ${e.ms} ms${shown}`);
        for (const [code, { count, path }] of Object.entries(e.ack.errors)) {
          // ENOENT: gone again before the guest got to it; its deletion is replayed next.
          if (code === 'ENOENT' || told.has(code)) continue;
          told.add(code);
          out.notice(`${plural(count, 'change')} could not be replayed (${code}), e.g. ${path}${failureHint(code)}`);
        }
        return;
      }
      case 'disconnected':
        out.notice(`lost the guest (${e.error.message}); changes are kept and replayed when it is back`);
        return;
      case 'reconnecting':
        out.waiting(`reconnecting to the guest (attempt ${e.attempt})`);
        return;
      case 'reconnected':
        out.info(`reconnected after ${(e.outageMs / 1000).toFixed(1)} s; replaying ${plural(e.pending, 'change')} made meanwhile`);
        return;
      case 'dropped':
        out.notice(`${plural(e.paths, 'change')} made while the guest was away were not replayed: restart the guest's watchers if they missed them`);
        return;
      case 'watch-error':
        out.notice(`watching the host: ${e.error.message}${watchHint(e.error.code)}`);
        return;
      case 'failed':
        return; // the same error ends the command and is rendered there
      default:
        assertNever(e);
    }
  };
}

function failureHint(code: string): string {
  switch (code) {
    case 'EPERM':
      return ': only the file owner may set its mtime, so the guest user needs the host user\'s uid';
    case 'EACCES':
      return ': the guest user may not reach that path';
    case 'EROFS':
      return ': the mount is read-only in the guest';
    default:
      return '';
  }
}

function watchHint(code: string | undefined): string {
  if (code === 'ENOSPC') return '; the host ran out of inotify watches: raise fs.inotify.max_user_watches (sysctl) or add ignore: patterns';
  if (code === 'EMFILE') return '; too many open files: raise the limit (ulimit -n) or add ignore: patterns';
  return '';
}

function eventJson(e: BridgeEvent): object {
  const err = (x: Error) => ({ code: isRumError(x) ? x.code : ((x as { code?: string }).code ?? null), message: x.message });
  switch (e.type) {
    case 'disconnected':
    case 'reconnecting':
    case 'watch-error':
    case 'failed':
      return { ...e, error: err(e.error) };
    default:
      return e;
  }
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
