// Owns: what a libvirt URI says by itself: which daemon it names (a per-user session one or the
// system one) and whether that daemon is on this machine. Not: reaching it (virsh.ts, rpc.ts) or
// which URIs rum.yaml may hold (config/schema.ts).

function parse(uri: string): URL | undefined {
  try {
    return new URL(uri);
  } catch {
    return undefined;
  }
}

/** The daemon the URI's path names, whatever its transport, host or parameters:
 * `qemu+ssh://h/session?keyfile=/k` is a session daemon's, `qemu:///system?mode=legacy` the system's. */
export function uriDaemon(uri: string): 'session' | 'system' | undefined {
  const path = parse(uri)?.pathname;
  return path === '/session' ? 'session' : path === '/system' ? 'system' : undefined;
}

/** `qemu:///session`, `qemu+ssh://host/session?...`: a per-user libvirtd, without libvirt networks. */
export function isSessionUri(uri: string): boolean {
  return uriDaemon(uri) === 'session';
}

/** A daemon on this machine (qemu:///system, qemu+unix:///system?socket=...), not a remote host. */
export function isLocalUri(uri: string): boolean {
  const u = parse(uri);
  return (u?.protocol === 'qemu:' || u?.protocol === 'qemu+unix:') && u.host === '';
}
