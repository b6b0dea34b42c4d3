#!/bin/bash
# Installs what rum's build, tests and demo need on Debian 12, only what is missing.
# System packages need root (CI runs as root); npm packages come from the host's own npm settings.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils dnsmasq-base  # the VM stack
  xorriso genisoimage                # reading seed ISOs back in tests; genisoimage as the bench baseline
  mmdebstrap extlinux syslinux-common fdisk e2fsprogs  # building the guest test image
  libxml2-utils cloud-init           # virt-xml-validate's schemas; `cloud-init schema` for user-data
  openssh-client iproute2 apt-utils  # ssh/scp in e2e; network namespaces; the in-namespace apt repo
  python3 python3-yaml hyperfine xxhash  # local HTTP servers; PyYAML as cloud-init reads; bench timing
  openssl                            # a test CA for the https download test
  acl                                # setfacl, as rum up and rum doctor tell a user to run it
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${missing[*]}" >&2
    echo "hint: run as root, or: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# node_modules is current when it was installed from this very lock file.
if ! cmp -s package-lock.json node_modules/.package-lock.json 2>/dev/null && \
   ! [ node_modules/.rum-lock-stamp -nt package-lock.json ]; then
  npm ci --no-audit --no-fund
  touch node_modules/.rum-lock-stamp
fi
