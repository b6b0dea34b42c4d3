#!/bin/bash
# make demo: boots examples/demo with rum inside the sandboxed test environment (its own network
# namespace and libvirtd), runs a command in the guest, and says how to get a shell and clean up.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
test/e2e/env.sh start
mirror=$(test/e2e/image-mirror.sh start)
trap '"$root/test/e2e/image-mirror.sh" stop' EXIT   # only needed while the image downloads
# rum runs in the namespace too: it talks to the guest. The debian-12 shorthand is served from a
# local mirror of the test image, so nothing reaches a real image host.
rum() { "$root/test/e2e/rum-in-ns" env RUM_IMAGE_MIRROR="$mirror" "$root/bin/rum" -c "$root/examples/demo" "$@"; }
echo "--- rum up --dry-run"
rum up --dry-run || true   # exit 10: something would change (the VM does not exist yet)
echo "--- rum up"
rum up
echo "--- rum exec -- sh -c 'uname -a; cat /etc/motd; cloud-init status'"
rum exec -- sh -c 'uname -a; cat /etc/motd; cloud-init status'
echo "--- rum status"
rum status
cat <<MSG

The demo VM is running. From $root, as root:
  a shell in it:    test/e2e/rum-in-ns bin/rum -c examples/demo ssh
  remove it:        test/e2e/rum-in-ns bin/rum -c examples/demo destroy -y
  end the sandbox:  make env-stop   (its libvirtd, network namespace and every VM in it)
MSG
