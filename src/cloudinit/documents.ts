// Owns: the cloud-init NoCloud documents (meta-data, user-data), built as data and serialised by
// YAML 1.1 (yaml11.ts), never by string templates: config strings cannot break out of their scalar.
// Not: the seed ISO (src/iso) or where the documents are written (tasks/).
import { modulesAfterSshd } from './modules.js';
import { warmBootCommands } from './warm-boot.js';
import { yaml11 } from './yaml11.js';

export interface MetaDataSpec {
  instanceId: string;
  hostname: string;
}

export function metaDataDocument(s: MetaDataSpec): string {
  return yaml11({ 'instance-id': s.instanceId, 'local-hostname': s.hostname });
}

export interface GuestMount {
  tag: string;
  target: string;
  type: 'virtiofs' | '9p';
  readonly: boolean;
}

export interface UserDataSpec {
  hostname: string;
  user: string;
  /** The guest user's uid: the host user's, so files in shared folders line up. */
  uid?: number;
  /** The VM's own client key first, then the user's extra keys. */
  authorizedKeys: string[];
  hostKey: { private: string; public: string };
  /** apt source lines (e.g. a local repository); replaces the image's sources when given. */
  aptSources?: string[];
  system?: string;
  boot?: string;
  mounts: GuestMount[];
  /** The project network's DNS domain: searched, so other machines answer to their short names. */
  searchDomain?: string;
}

/** Where provisioning lives in the guest; `rum logs --provision` and `rum provision` read these. */
export const GuestPaths = {
  dir: '/var/lib/rum',
  system: '/var/lib/rum/provision/system.sh',
  boot: '/var/lib/rum/provision/boot.sh',
  runner: '/var/lib/cloud/scripts/per-boot/rum-provision',
  logs: '/var/log/rum',
} as const;

// Runs at every boot (cloud-init's per-boot scripts, final stage, so `cloud-init status --wait`
// covers it): the system script once per instance, then the boot script, each logged with its
// exit status. One runner keeps the order right: cloud-init runs per-boot before runcmd.
const RUNNER = `#!/bin/sh
# Written by rum. Output and exit status of each script: ${GuestPaths.logs}/<script>.log, .status
set -u
mkdir -p ${GuestPaths.logs}
run() {
  [ -f "$2" ] || return 0
  echo "rum: $1 script started $(date -u +%FT%TZ)" > "${GuestPaths.logs}/$1.log"
  sh "$2" >> "${GuestPaths.logs}/$1.log" 2>&1
  status=$?
  echo "$status" > "${GuestPaths.logs}/$1.status"
  echo "rum: $1 script exited $status" >> "${GuestPaths.logs}/$1.log"
  return $status
}
failed=0
if [ ! -f ${GuestPaths.dir}/system.done ]; then
  run system ${GuestPaths.system} || failed=1
  touch ${GuestPaths.dir}/system.done
fi
run boot ${GuestPaths.boot} || failed=1
exit $failed
`;

const SSHD_DROP_IN = '# Written by rum: log in with keys only.\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n';

// systemd's ordering, in fstab only (mount(8) ignores x- options): a warm boot's shares are
// mounted before sshd starts, as cloud-init's bootcmd mounts them on the other boots.
const FSTAB_ONLY = 'x-systemd.before=ssh.service,x-systemd.before=sshd.service';

const MOUNT_OPTIONS = {
  '9p': 'trans=virtio,version=9p2000.L,msize=262144,nofail',
  virtiofs: 'nofail',
} as const;

/** user-data as data: what cloud-init must read, exactly (the tests load the text back with PyYAML). */
export function userDataObject(s: UserDataSpec): Record<string, unknown> {
  const files: object[] = [];
  const script = (path: string, content: string) =>
    files.push({ path, permissions: '0755', owner: 'root:root', content: content.endsWith('\n') ? content : `${content}\n` });
  if (s.system !== undefined) script(GuestPaths.system, s.system);
  if (s.boot !== undefined) script(GuestPaths.boot, s.boot);
  if (s.system !== undefined || s.boot !== undefined) script(GuestPaths.runner, RUNNER);

  // Keys only, from sshd's first start (write_files runs before it): not cloud-init's
  // ssh_pwauth, whose module runs after sshd and restarts it.
  files.push({ path: '/etc/ssh/sshd_config.d/50-rum.conf', permissions: '0644', owner: 'root:root', content: SSHD_DROP_IN });
  // C.UTF-8 is always present in glibc: generating another locale costs boot time. Written here,
  // not by cloud-init's locale module, which runs after sshd.
  files.push({ path: '/etc/default/locale', permissions: '0644', owner: 'root:root', content: 'LANG=C.UTF-8\n' });

  const doc: Record<string, unknown> = {
    hostname: s.hostname,
    manage_etc_hosts: true, // else every sudo looks the hostname up in DNS and warns
    users: [
      {
        name: s.user,
        ...(s.uid !== undefined ? { uid: s.uid } : {}),
        shell: '/bin/bash',
        sudo: 'ALL=(ALL) NOPASSWD:ALL',
        lock_passwd: true,
        ssh_authorized_keys: s.authorizedKeys,
      },
    ],
    disable_root: true,
    // The host key is made on the host and pinned before first boot; nothing else is generated
    // (RSA generation alone costs seconds under TCG).
    ssh_deletekeys: true,
    ssh_keys: { ed25519_private: s.hostKey.private, ed25519_public: s.hostKey.public },
    ssh_genkeytypes: ['ed25519'],
  };
  if (s.aptSources && s.aptSources.length > 0) {
    doc.apt = { preserve_sources_list: false, sources_list: `${s.aptSources.join('\n')}\n` };
  }
  // Not cloud-init's `mounts` module: up to 22.4 it turns a tag into /dev/<tag>. An early mount
  // at every boot cloud-init runs (bootcmd precedes write_files on the first), so provision
  // scripts see the shares; fstab lines (nofail: a missing share never blocks boot; before
  // sshd, as bootcmd's are) for warm boots, which systemd mounts (warm-boot.ts). Tags, targets
  // and types are validated; argv form: no shell parsing.
  const opts = (m: GuestMount) => (m.readonly ? `${MOUNT_OPTIONS[m.type]},ro` : MOUNT_OPTIONS[m.type]);
  const bootcmd: string[][] = warmBootCommands(s.mounts.map((m) => `${m.tag} ${m.target} ${m.type} ${opts(m)},${FSTAB_ONLY} 0 0`));
  for (const m of s.mounts) {
    bootcmd.push(['sh', '-c', 'mkdir -p "$1" && { mountpoint -q "$1" || mount -t "$2" -o "$3" "$4" "$1"; }', 'rum-mount', m.target, m.type, opts(m), m.tag]);
  }
  if (s.searchDomain !== undefined) {
    // dhclient takes the search domain from DHCP, systemd-networkd does not (UseDomains=no):
    // systemd-resolved is told directly, before sshd starts. bootcmd, at every boot cloud-init
    // runs (write_files comes after resolved has read its configuration); a warm boot's
    // resolved reads the file as left.
    bootcmd.push(
      [
        'sh',
        '-c',
        'command -v resolvectl >/dev/null || exit 0; mkdir -p /etc/systemd/resolved.conf.d && printf "# Written by rum: machines of this project by their names.\\n[Resolve]\\nDomains=%s\\n" "$1" > /etc/systemd/resolved.conf.d/50-rum.conf && systemctl try-restart systemd-resolved.service',
        'rum-search',
        s.searchDomain,
      ],
    );
  }
  doc.bootcmd = bootcmd;
  doc.write_files = files;
  const after = modulesAfterSshd(s);
  doc.cloud_config_modules = after.config;
  doc.cloud_final_modules = after.final;
  return doc;
}

export function userDataDocument(s: UserDataSpec): string {
  return `#cloud-config\n${yaml11(userDataObject(s))}`;
}
