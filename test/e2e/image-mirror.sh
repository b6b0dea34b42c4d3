#!/bin/bash
# test/e2e/image-mirror.sh start|stop - a local stand-in for the Debian cloud-image host, so the
# `debian-12` shorthand, the download and its SHA512SUMS check run for real without any traffic
# to a real image host. It serves the test guest image in Debian's layout
# (<root>/bookworm/latest/debian-12-genericcloud-amd64.qcow2 + SHA512SUMS) on 127.0.0.1:$PORT
# inside the e2e namespace; rum, run there too (rum-in-ns), reaches it with
# RUM_IMAGE_MIRROR=http://127.0.0.1:$PORT/
set -euo pipefail
NS=rumtest
PORT=${MIRROR_PORT:-8081}
CACHE=${IMAGE_CACHE:-/var/cache/rum-test}
ROOT=$CACHE/mirror
PIDFILE=/run/rum-test/image-mirror.pid
die() { echo "image-mirror: $*" >&2; exit 1; }

case ${1:-} in
start)
  image=$(readlink -f "$CACHE/debian-12-rumtest.qcow2") || die "no test image (make image)"
  [ -f "$image" ] || die "no test image at $image (make image)"
  dir=$ROOT/bookworm/latest
  mkdir -p "$dir"
  # The SUMS file names the image it was made for, so a rebuilt image gets a new one.
  if [ "$(cat "$dir/.source" 2>/dev/null)" != "$image" ]; then
    ln -sfn "$image" "$dir/debian-12-genericcloud-amd64.qcow2"
    (cd "$dir" && sha512sum -b debian-12-genericcloud-amd64.qcow2 | sed 's/ \*/  /' > SHA512SUMS.tmp && mv SHA512SUMS.tmp SHA512SUMS)
    echo "$image" > "$dir/.source"
  fi
  [ -e "/run/netns/$NS" ] || die "namespace $NS missing (test/e2e/env.sh start)"
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then echo "http://127.0.0.1:$PORT/"; exit 0; fi
  mkdir -p "$(dirname "$PIDFILE")"
  ip netns exec "$NS" /bin/sh -c 'echo $$ > "$1"; exec /usr/bin/python3 -m http.server "$2" --bind 127.0.0.1 --directory "$3"' \
    sh "$PIDFILE" "$PORT" "$ROOT" > /run/rum-test/image-mirror.log 2>&1 &
  for _ in $(seq 50); do   # bounded: 50 x 0.1 s
    ip netns exec "$NS" /usr/bin/python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
      "http://127.0.0.1:$PORT/bookworm/latest/SHA512SUMS" 2>/dev/null && { echo "http://127.0.0.1:$PORT/"; exit 0; }
    sleep 0.1
  done
  die "mirror did not answer on 127.0.0.1:$PORT (see /run/rum-test/image-mirror.log)"
  ;;
stop)
  if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    # Only our own server: the recorded PID, and only if it is still that python3.
    if [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = python3 ]; then kill "$pid" 2>/dev/null || true; fi
    rm -f "$PIDFILE"
  fi
  ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
