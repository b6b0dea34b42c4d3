// `rum list`: every VM of this user on this machine, from the data directory and one libvirt
// question per URI: name, state, SSH address, disk use and project. Loads no rum.yaml.
import { listVms, type ListedVm, type ListNote, type VmListing } from '../../vm-list.js';
import { diskSize, homePath, Output, visible } from '../output.js';

export interface ListOptions {
  json?: boolean;
}

/**
 * Exit 0 whenever a listing could be made, even with states 'unknown' (libvirt down, a damaged
 * file): like `rum status`, this reports the world, it does not judge it, and the notes and the
 * JSON say what could not be told. Only a data directory that cannot be read at all fails (a
 * RumError: exit 7), since then nothing would be listed and "no VMs" would be a lie.
 */
export async function list(opts: ListOptions): Promise<number> {
  const listing = await listVms();
  const out = new Output(opts);
  if (opts.json) {
    out.data({ vms: listing.vms, notes: listing.notes.map((n) => ({ ...n, text: describeNote(n) })) });
    return 0;
  }
  render(out, listing);
  return 0;
}

function render(out: Output, { vms, notes }: VmListing): void {
  if (vms.length === 0) out.out('no VMs');
  else {
    const rows = [['NAME', 'STATE', 'ADDRESS', 'DISK', 'PROJECT'], ...vms.map(row)];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) out.out(r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '));
  }
  for (const n of notes) {
    out.notice(describeNote(n));
    if (n.type === 'libvirt-unreachable' && n.hint) out.info(`  hint: ${visible(n.hint)}`);
  }
}

function row(v: ListedVm): string[] {
  const address = v.ssh ? `${v.ssh.user === null ? '' : `${v.ssh.user}@`}${v.ssh.host}:${v.ssh.port}` : '-';
  return [v.vm, v.state, visible(address), v.diskBytes === null ? '-' : diskSize(v.diskBytes), v.config === null ? '?' : visible(homePath(v.config))];
}

/** Worded once, for the terminal and for --json's `text`. */
export function describeNote(n: ListNote): string {
  switch (n.type) {
    case 'unreadable':
      return `${n.vm}: ${n.file} is ${n.why === 'missing' ? 'missing' : `not readable: ${visible(n.why)}`}`;
    case 'libvirt-unreachable':
      return `${visible(n.uri)} could not be asked (${n.vms.join(', ')} shown as unknown): ${visible(n.message)}`;
    case 'not-rums':
      return (
        `${n.vm}: the libvirt domain "${n.vm}" on ${visible(n.uri)} is not this VM's ` +
        `(${n.title.startsWith('rum: ') ? `it belongs to ${visible(homePath(n.title.slice(5)))}` : 'it was not made by rum'}): rum leaves it alone`
      );
    case 'uri-assumed':
      return `${n.vms.join(', ')}: made before rum recorded the libvirt URI, so ${n.uri} is assumed (the next \`rum up\` there records it)`;
    default:
      return assertNever(n);
  }
}

function assertNever(x: never): never {
  throw new Error(`unhandled note: ${JSON.stringify(x)}`);
}
