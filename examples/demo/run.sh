#!/bin/bash
# make demo: boots examples/demo with rum inside the sandboxed test environment (its own network
# namespace and libvirtd), runs a command in the guest, and says how to get a shell and clean up.
set -euo pipefail
cd "$(dirname "$0")/../.."
test/e2e/env.sh start
mirror=$(test/e2e/image-mirror.sh start)
in_ns() { test/e2e/rum-in-ns env RUM_IMAGE_MIRROR="$mirror" "$@"; }
rum=$PWD/bin/rum.js
cd examples/demo
echo "--- rum up --dry-run"
in_ns "$rum" up --dry-run || true
echo "--- rum up"
in_ns "$rum" up
echo "--- rum exec -- uname -a; cat /etc/motd"
in_ns "$rum" exec -- sh -c 'uname -a; cat /etc/motd; cloud-init status'
echo "--- rum graph"
in_ns "$rum" graph
cat <<MSG

The demo VM is running. From $(dirs +0):
  a shell in it:   sudo test/e2e/rum-in-ns bin/rum.js -c examples/demo ssh
  remove it:       sudo test/e2e/rum-in-ns bin/rum.js -c examples/demo destroy -y
  stop the sandbox (libvirtd, namespace): sudo make env-stop
MSG
