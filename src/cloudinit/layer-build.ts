// Owns: what a layer's builder guest does: the user-data that installs the packages, runs
// provision.image, seals the disk (nothing of this instance left for the VMs built on it) and
// powers off; and reading how that went from its serial console. Not: booting it
// (src/machine/layer-builder.ts).
import { yaml11 } from './yaml11.js';

export interface LayerBuildSpec {
  packages: readonly string[];
  aptSources?: readonly string[];
  script?: string;
}

const DIR = '/var/lib/rum-layer';

/** The builder's lines on the console: every step, then "sealed" or "failed: ...". */
export const MARK = 'rum-layer:';

// Output goes to the serial console, which the host reads: every step is named there, and a
// failure's output is what `up` shows. The seal leaves no identity of this instance in the
// layer: an empty machine-id (systemd makes a new one at first boot; two clones with one id
// would share a DHCP client id), no SSH host keys, no cloud-init instance state, no apt lists
// or downloaded packages, no journal of its boot, the freed blocks trimmed. `poweroff --force` stops it at once, so
// cloud-init writes nothing more after its state is cleaned (filesystems are still unmounted).
const BUILD = `#!/bin/sh
# Written by rum: builds a provisioned layer, seals it, powers off.
set -u
exec >/dev/console 2>&1
say() { echo "${MARK} $*"; }
# poweroff --force returns at once: the sleep keeps cloud-init from going on meanwhile.
off() { sync; systemctl poweroff --force; sleep 600; }
fail() { say "failed: $1 exited $2"; off; exit 1; }
export DEBIAN_FRONTEND=noninteractive
if [ -s ${DIR}/packages ]; then
  say "step: apt-get update"
  apt-get -q -o DPkg::Lock::Timeout=600 update || fail "apt-get update" $?
  say "step: installing $(tr '\\n' ' ' < ${DIR}/packages)"
  # Names rum.yaml's schema allows: no blanks, no glob characters.
  set -- $(cat ${DIR}/packages)
  apt-get -q -y -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold install "$@" || fail "apt-get install" $?
fi
if [ -f ${DIR}/image.sh ]; then
  say "step: provision.image"
  sh ${DIR}/image.sh || fail "provision.image" $?
fi
say "step: sealing"
apt-get -q clean
rm -rf /var/lib/apt/lists/* /var/lib/dhcp/*.leases /var/lib/systemd/random-seed /etc/ssh/ssh_host_*
: > /etc/machine-id
[ -L /var/lib/dbus/machine-id ] || rm -f /var/lib/dbus/machine-id
cloud-init clean --logs || fail "cloud-init clean" $?
rm -rf ${DIR}
rm -rf /var/log/journal/*
fstrim -v / || say "fstrim failed: the layer keeps the freed blocks"
sync
say "sealed"
off
`;

export function layerMetaData(key: string): string {
  return yaml11({ 'instance-id': `rum-layer-${key}`, 'local-hostname': 'rum-layer' });
}

export function layerUserData(s: LayerBuildSpec): string {
  const file = (path: string, content: string, permissions = '0644') => ({ path, permissions, owner: 'root:root', content: content.endsWith('\n') ? content : `${content}\n` });
  const files = [file(`${DIR}/build.sh`, BUILD, '0755')];
  if (s.packages.length > 0) files.push(file(`${DIR}/packages`, s.packages.join('\n')));
  if (s.script !== undefined) files.push(file(`${DIR}/image.sh`, s.script, '0755'));
  const doc: Record<string, unknown> = {
    // No account, not even the image's default one: nobody logs in, and none is left in the
    // layer. An empty group of names: the schema wants an entry, a mapping is deprecated.
    users: [[]],
    disable_root: true,
    ssh_genkeytypes: ['ed25519'], // the seal removes it: the cheapest to make
    write_files: files,
    runcmd: [[`${DIR}/build.sh`]],
    cloud_config_modules: [...(s.aptSources && s.aptSources.length > 0 ? ['apt-configure'] : []), 'runcmd'],
    cloud_final_modules: ['scripts-user'],
  };
  if (s.aptSources && s.aptSources.length > 0) doc.apt = { preserve_sources_list: false, sources_list: `${s.aptSources.join('\n')}\n` };
  return `#cloud-config\n${yaml11(doc)}`;
}

export type BuildOutcome = { ok: true } | { ok: false; why: string };

/** How the build went, from the console: sealed, failed at a step, or it stopped before either. */
export function buildOutcome(console: string): BuildOutcome {
  const marks = console.split(/\r?\n/).flatMap((l) => {
    const at = l.indexOf(MARK);
    return at < 0 ? [] : [l.slice(at + MARK.length).trim()];
  });
  if (marks.includes('sealed')) return { ok: true };
  const failed = marks.find((m) => m.startsWith('failed: '));
  if (failed) return { ok: false, why: failed.slice('failed: '.length) };
  const last = [...marks].reverse().find((m) => m.startsWith('step: '));
  return { ok: false, why: last ? `the builder stopped during "${last.slice('step: '.length)}"` : 'the builder stopped before its build script ran' };
}

/** What to show of a failed build's console: up to its last line of rum's, where it stopped. */
export function consoleExcerpt(console: string, lines = 30): string {
  const all = console.split(/\r?\n/).filter((l) => l.trim() !== '');
  let end = all.length;
  for (let i = all.length - 1; i >= 0; i--) if (all[i]!.includes(MARK)) { end = i + 1; break; }
  return all.slice(Math.max(0, end - lines), end).join('\n');
}

/** The latest step on the console, for progress. */
export function currentStep(console: string): string | undefined {
  const at = console.lastIndexOf(`${MARK} step: `);
  return at < 0 ? undefined : console.slice(at + MARK.length + 7).split(/\r?\n/)[0]?.trim();
}
