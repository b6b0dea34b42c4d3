// Owns: warm boots in the guest. A boot whose seed, disks and cloud-init instance are as they were
// when cloud-init last finished is a warm boot: cloud-init has nothing to do there but its
// every-boot work, so it is skipped (its four stages are ~40 s under TCG, most of it Python
// starting) and the guest's own units do that work: systemd mounts the shares from fstab, the
// search domain's drop-in is already on disk, and rum-boot.service runs the per-boot scripts
// (the provision runner). Any difference, or any doubt (a seed the early boot cannot read), and
// cloud-init runs as it always did; a changed rum.yaml therefore still reaches the guest.
// Installed by bootcmd at every boot cloud-init runs, so an existing VM gets it with its next
// seed, and the fstab lines follow the seed's mounts. Not: what the documents say otherwise
// (documents.ts).

export const WarmBootPaths = {
  dir: '/var/lib/rum/warm-boot',
  fingerprint: '/var/lib/rum/warm-boot/fingerprint',
  recorded: '/var/lib/rum/warm-boot/recorded',
  boot: '/var/lib/rum/warm-boot/boot',
  // Same name as cloud-init's: one in /etc replaces the packaged one (systemd.generator(7)).
  generator: '/etc/systemd/system-generators/cloud-init-generator',
  // Final stage, after the provision runner (per-boot scripts run in name order).
  recorder: '/var/lib/cloud/scripts/per-boot/rum-warm-boot-record',
  /** Written by rum-boot.service when it has run the per-boot scripts: cloud-init's result.json shape. */
  result: '/run/rum/result.json',
  kind: '/run/rum/boot-kind',
} as const;

const P = WarmBootPaths;

// What cloud-init would act on at boot. The seed's bytes: rum rebuilds it when user-data or
// meta-data change. The disks' sizes: a bigger disk is grown by cloud-init's growpart and
// resizefs. The instance record: `cloud-init clean` removes it to ask for a first boot.
const FINGERPRINT = `#!/bin/sh
# Written by rum: what decides a warm boot (${P.generator}).
for d in /dev/sr*; do [ -b "$d" ] && echo "$d $(sha256sum < "$d" 2>/dev/null)"; done
for s in /sys/block/vd*/size /sys/block/sd*/size /sys/block/nvme*/size; do [ -f "$s" ] && echo "$s $(cat "$s")"; done
echo "instance $(cat /var/lib/cloud/data/instance-id 2>/dev/null)"
`;

const RECORDER = `#!/bin/sh
# Written by rum: cloud-init has run with this seed; a boot that finds it unchanged is warm.
mkdir -p ${P.dir} && sh ${P.fingerprint} > ${P.recorded}.tmp && mv ${P.recorded}.tmp ${P.recorded}
`;

// On a warm boot: the per-boot scripts cloud-init's final stage would have run (in name order,
// as its run-parts does), then a result in cloud-init's shape, so `rum up` waits for it alike.
const BOOT = `#!/bin/sh
# Written by rum: run by rum-boot.service on a warm boot, in place of cloud-init's final stage.
failed=
for f in /var/lib/cloud/scripts/per-boot/*; do
  [ -f "$f" ] && [ -x "$f" ] || continue
  [ "$f" = ${P.recorder} ] && continue
  "$f" || failed="$failed \${f##*/}"
done
mkdir -p /run/rum
if [ -n "$failed" ]; then
  errors="[\\"rum-boot.service: per-boot scripts failed:$failed (rum logs --provision)\\"]"
else
  errors='[]'
fi
printf '{"v1": {"errors": %s}}\\n' "$errors" > ${P.result}.tmp && mv ${P.result}.tmp ${P.result}
[ -z "$failed" ]
`;

const UNIT = `[Unit]
Description=rum: per-boot scripts on a warm boot (cloud-init skipped)
Wants=network-online.target
After=network-online.target local-fs.target remote-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh ${P.boot}
StandardOutput=journal+console
`;

// Decided once per boot (a daemon-reload runs generators again, maybe after the recorder ran):
// warm only when the fingerprint matches and nobody disabled cloud-init on purpose; otherwise
// cloud-init's own generator decides, as without rum.
const GENERATOR = `#!/bin/sh
# Written by rum: cloud-init runs only when it has work; see ${P.dir}.
set -u
orig=
for d in /usr/lib/systemd/system-generators /lib/systemd/system-generators; do
  [ -x "$d/cloud-init-generator" ] && { orig=$d/cloud-init-generator; break; }
done
[ -n "$orig" ] || exit 0
mkdir -p /run/rum
if [ ! -s ${P.kind} ]; then
  kind=cloud-init
  if [ ! -e /etc/cloud/cloud-init.disabled ] && ! grep -qw cloud-init=disabled /proc/cmdline \\
    && [ -s ${P.recorded} ] && [ "$(sh ${P.fingerprint})" = "$(cat ${P.recorded})" ]; then
    kind=warm
  fi
  echo "$kind" > ${P.kind}
fi
[ "$(cat ${P.kind})" = warm ] || exec "$orig" "$@"
# As cloud-init's generator leaves a disabled boot: \`cloud-init status\` says disabled.
mkdir -p /run/cloud-init "$1/multi-user.target.wants"
rm -f /run/cloud-init/enabled
: > /run/cloud-init/disabled
cat > "$1/rum-boot.service" <<'EOF'
${UNIT}EOF
ln -sf "$1/rum-boot.service" "$1/multi-user.target.wants/rum-boot.service"
`;

/**
 * bootcmd entries, argv form: install the warm-boot pieces, and make rum's fstab lines the
 * seed's (tagged `rum-<hex>`; other lines are kept). `fstab` holds one line per share.
 */
export function warmBootCommands(fstab: string[]): string[][] {
  const install = [
    'set -e',
    `mkdir -p ${P.dir} ${P.generator.replace(/\/[^/]+$/, '')} ${P.recorder.replace(/\/[^/]+$/, '')}`,
    `printf %s "$1" > ${P.fingerprint}`,
    `printf %s "$2" > ${P.boot}`,
    `printf %s "$3" > ${P.recorder} && chmod 0755 ${P.recorder}`,
    `printf %s "$4" > ${P.generator}.tmp && chmod 0755 ${P.generator}.tmp && mv ${P.generator}.tmp ${P.generator}`,
  ].join('\n');
  const shares = [
    'set -e',
    "{ grep -Ev '^rum-[0-9a-f]+[[:space:]]' /etc/fstab || true; printf %s \"$1\"; } > /etc/fstab.rum-tmp",
    'chmod 0644 /etc/fstab.rum-tmp && mv /etc/fstab.rum-tmp /etc/fstab',
  ].join('\n');
  return [
    ['sh', '-c', install, 'rum-warm-boot', FINGERPRINT, BOOT, RECORDER, GENERATOR],
    ['sh', '-c', shares, 'rum-fstab', fstab.map((l) => `${l}\n`).join('')],
  ];
}
