#!/bin/bash
# test/e2e/env.sh start|stop|status - the private VM environment rum's e2e tests run in.
#
# start  checks the tools (installs nothing), refuses if a libvirt daemon it did not start
#        is running, makes /dev/kvm root:kvm 0660 when it is root's alone (else every
#        `virsh define` takes ~80 s), creates network namespace "rumtest" and starts
#        virtlogd + libvirtd inside it, makes sure libvirt's "default" NAT network is active
#        (its bridge and dnsmasq live in the namespace too), creates the unprivileged user
#        "rumtest" (in group libvirt, which owns the daemon's socket) and checks qemu:///session and
#        qemu:///system work for it in the namespace, and serves a tiny
#        apt repo (inotify-tools) inside the namespace on 127.0.0.1:8080 (guests on SLIRP:
#        http://10.0.2.2:8080) and on the NAT bridge address, port 8080.
#        A failed start undoes itself (runs stop).
# stop   destroys and undefines every domain and network the environment or the tests made
#        (system and session), ends the daemons it started by recorded PID, then whatever is
#        still inside the namespace (every process there was started by this environment),
#        and deletes the namespace. Idempotent; works after a failed test or start.
# status prints what is up; exit 0 only when the environment is fully up.
#
# Nothing here talks to a guest from the main network namespace: every QEMU, daemon, HTTP
# server and client runs in the namespace (clients via test/e2e/rum-in-ns). virsh talks to
# libvirtd over its unix socket and is run from anywhere.
# Records live in /run/rum-test (also read by test/e2e/env.ts); the apt repo is cached in
# $IMAGE_CACHE/apt-repo (default /var/cache/rum-test), next to the guest image.
set -euo pipefail

NS=rumtest
TEST_USER=rumtest
RUN_DIR=/run/rum-test
CACHE=${IMAGE_CACHE:-/var/cache/rum-test}
REPO_DIR=$CACHE/apt-repo
REPO_PACKAGES=(inotify-tools libinotifytools0)
REPO_PORT=8080
SYS_URI=qemu:///system
SOCK=/run/libvirt/libvirt-sock
NET_XML=/usr/share/libvirt/networks/default.xml
DAEMON_PATH=/usr/sbin:/usr/bin:/sbin:/bin
PY=/usr/bin/python3            # Debian's own python3, not whatever is first on root's PATH
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say() { printf 'env: %s\n' "$*"; }
warn() { printf 'env: warning: %s\n' "$*" >&2; }
die() { printf 'env: error: %s\n' "$*" >&2; exit 1; }

virsh_sys() { LC_ALL=C virsh -q -c "$SYS_URI" "$@"; }
ns_exists() { [ -e "/run/netns/$NS" ]; }
in_ns() { ip netns exec "$NS" "$@"; }
# The user's session daemon only ever runs inside the namespace: never call virsh for
# qemu:///session without this (outside, it would spawn a daemon in the main namespace).
virsh_session() { timeout 60 "$HERE/rum-in-ns" --user "$TEST_USER" env LC_ALL=C virsh -q -c qemu:///session "$@"; }

# pid_of NAME COMM: the PID recorded as $RUN_DIR/NAME.pid when that process is still
# alive and still is COMM (guards against a reused PID); nothing otherwise.
pid_of() {
  local f=$RUN_DIR/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && echo "$pid"
  return 0
}

# wait_gone SECONDS PID...: bounded wait until the PIDs have exited; 1 if some are left.
wait_gone() {
  local secs=$1 i p left; shift
  for ((i = 0; i < secs * 10; i++)); do
    left=0
    for p in "$@"; do [ -e "/proc/$p" ] && left=1; done
    [ $left = 0 ] && return 0
    sleep 0.1
  done
  return 1
}

# end_pid LABEL PID: SIGTERM, bounded wait, then SIGKILL. Only ever called with a PID this
# environment recorded or one inside its own namespace.
end_pid() {
  local label=$1 pid=$2
  [ -e "/proc/$pid" ] || return 0
  say "stopping $label (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || return 0
  if ! wait_gone 10 "$pid"; then
    warn "$label (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone 5 "$pid" || warn "$label (pid $pid) is still there"
  fi
}

# Libvirt daemons running outside our namespace (or in it, when it has been deleted).
foreign_daemons() {
  local p ns
  for p in $(for c in libvirtd virtqemud virtnetworkd virtproxyd virtlogd virtlockd; do pgrep -x "$c"; done); do
    ns=$(ip netns identify "$p" 2>/dev/null || true)
    [ "$ns" = "$NS" ] && continue
    printf '%s(pid %s, user %s) ' "$(cat "/proc/$p/comm" 2>/dev/null)" "$p" "$(ps -o user= -p "$p" 2>/dev/null)"
  done
}

check_tools() {
  local missing=() t
  for t in ip virsh libvirtd virtlogd qemu-system-x86_64 qemu-img dnsmasq iptables genisoimage \
           ssh ssh-keygen $PY apt-get apt-ftparchive xmllint useradd setpriv timeout pgrep; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  [ -f "$NET_XML" ] || missing+=("$NET_XML")
  [ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (hint: scripts/install-deps.sh installs them)"
}

fix_kvm() {
  [ -c /dev/kvm ] || return 0
  if [ "$(stat -c '%u %a' /dev/kvm)" = "0 600" ] && getent group kvm >/dev/null; then
    say "/dev/kvm is root's alone: chgrp kvm, chmod 0660 (else every virsh define takes ~80 s)"
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
  fi
}

# $RUN_DIR/mnt: a shared mount point, made before the daemons start. `ip netns exec` gives each
# daemon a mount namespace of its own (a slave of this one), so a filesystem a test mounts
# later (the fault tier's small tmpfs) reaches libvirtd, virtlogd and QEMU only from under here.
start_shared_mnt() {
  mkdir -p "$RUN_DIR/mnt"
  mountpoint -q "$RUN_DIR/mnt" || mount --bind "$RUN_DIR/mnt" "$RUN_DIR/mnt"
  mount --make-rshared "$RUN_DIR/mnt"
}

start_ns() {
  if ! ns_exists; then
    say "creating network namespace $NS"
    ip netns add "$NS"
  fi
  ip -n "$NS" link set lo up
}

# The daemon's socket as distributions without polkit set it up (Arch's and Gentoo's wiki, a
# Debian host without polkitd): read-write for members of group libvirt, no further auth. The
# unprivileged test user reaches qemu:///system through it, as users do. /etc is left alone.
write_libvirtd_conf() {
  getent group libvirt >/dev/null || die "group libvirt is missing (it comes with libvirt-daemon-system)"
  cat >"$RUN_DIR/libvirtd.conf" <<'CONF'
unix_sock_group = "libvirt"
unix_sock_ro_perms = "0777"
unix_sock_rw_perms = "0770"
auth_unix_ro = "none"
auth_unix_rw = "none"
CONF
}

# start_daemon NAME [ARGS...]: NAME -d inside the namespace; its own pid file (/run/NAME.pid,
# locked, so a second copy refuses) gives the PID we record.
start_daemon() {
  local name=$1 pid i; shift
  pid=$(pid_of "$name" "$name")
  if [ -n "$pid" ]; then say "$name already running (pid $pid)"; return 0; fi
  rm -f "/run/$name.pid"
  in_ns env -i PATH="$DAEMON_PATH" HOME=/root LC_ALL=C \
    LIBVIRT_LOG_OUTPUTS="3:file:$RUN_DIR/$name.log" "$name" "$@" -d </dev/null >/dev/null 2>&1 ||
    die "$name -d failed (see $RUN_DIR/$name.log)"
  for ((i = 0; i < 100; i++)); do          # <= 10 s for the daemonized child's pid file
    pid=$(cat "/run/$name.pid" 2>/dev/null || true)
    [ -n "$pid" ] && [ -e "/proc/$pid" ] && break
    sleep 0.1
  done
  [ -n "$pid" ] && [ -e "/proc/$pid" ] || die "$name did not write /run/$name.pid within 10 s"
  [ "$(ip netns identify "$pid")" = "$NS" ] || die "$name (pid $pid) is not in namespace $NS"
  echo "$pid" >"$RUN_DIR/$name.pid"
  say "started $name in $NS (pid $pid)"
}

wait_socket() {
  local i pid
  for ((i = 0; i < 150; i++)); do          # <= 30 s
    [ -S "$SOCK" ] && virsh_sys version >/dev/null 2>&1 && return 0
    pid=$(pid_of libvirtd libvirtd)
    [ -n "$pid" ] || die "libvirtd exited (see $RUN_DIR/libvirtd.log)"
    sleep 0.2
  done
  die "libvirtd socket $SOCK not answering after 30 s (see $RUN_DIR/libvirtd.log)"
}

# What existed before our first start is never undefined by stop.
record_preexisting() {
  [ -f "$RUN_DIR/preexisting" ] && return 0
  { virsh_sys list --all --name | sed 's/^/domain /'
    virsh_sys net-list --all --name | sed 's/^/network /'; } | sed '/ $/d' >"$RUN_DIR/preexisting"
}
preexisting() { grep -qxF "$1 $2" "$RUN_DIR/preexisting" 2>/dev/null; }

start_network() {
  if ! virsh_sys net-info default >/dev/null 2>&1; then
    say "defining libvirt network default from $NET_XML"
    virsh_sys net-define "$NET_XML" >/dev/null
  fi
  if [ "$(virsh_sys net-info default | awk '$1 == "Active:" {print $2}')" != yes ]; then
    say "starting network default (bridge + dnsmasq inside $NS)"
    virsh_sys net-start default >/dev/null
  fi
  NAT_ADDR=$(virsh_sys net-dumpxml default | xmllint --xpath 'string(/network/ip[1]/@address)' -)
  [ -n "$NAT_ADDR" ] || die "network default has no IPv4 address"
}

start_user() {
  if ! id "$TEST_USER" >/dev/null 2>&1; then
    say "creating user $TEST_USER (qemu:///session tests)"
    useradd --create-home --shell /bin/bash --comment 'rum e2e tests' "$TEST_USER"
  fi
  # qemu:///system as users reach it: a member of the group that owns the daemon's socket.
  id -nG "$TEST_USER" | tr ' ' '\n' | grep -qx libvirt || usermod -aG libvirt "$TEST_USER"
  # The session daemon exits 120 s after its last client; whenever it is (re)spawned it is
  # by a client inside the namespace, so it lives there too. stop ends it.
  local out
  out=$(virsh_session uri 2>&1) || die "virsh -c qemu:///session as $TEST_USER in $NS failed: $out"
  virsh_session list --all >/dev/null || die "virsh -c qemu:///session list failed for $TEST_USER"
  say "qemu:///session works for $TEST_USER in $NS"
  out=$(timeout 60 "$HERE/rum-in-ns" --user "$TEST_USER" env LC_ALL=C virsh -q -c "$SYS_URI" uri 2>&1) ||
    die "virsh -c $SYS_URI as $TEST_USER (group libvirt) failed: $out"
  say "$SYS_URI works for $TEST_USER through the socket's group"
}

build_repo() {
  if [ -s "$REPO_DIR/Packages" ]; then say "apt repo: $REPO_DIR (cached)"; return 0; fi
  say "building apt repo of ${REPO_PACKAGES[*]} in $REPO_DIR"
  local tmp=$REPO_DIR.tmp-$$
  rm -rf "$tmp" && mkdir -p "$tmp"
  ( cd "$tmp" &&
    apt-get -q -o APT::Sandbox::User=root download "${REPO_PACKAGES[@]}" >/dev/null &&
    apt-ftparchive packages . >Packages ) ||
    { rm -rf "$tmp"; die "could not build the apt repo (apt-get download ${REPO_PACKAGES[*]}; hint: apt-get update)"; }
  chmod -R a+rX "$tmp"
  rm -rf "$REPO_DIR" && mv -T "$tmp" "$REPO_DIR"
}

# serve_repo ADDR: python3 http.server on ADDR:8080 inside the namespace, as nobody.
serve_repo() {
  local addr=$1 name=http-$1 pid i
  pid=$(pid_of "$name" python3)
  if [ -z "$pid" ]; then
    # The shell records its own PID, then becomes the server (exec keeps the PID).
    rm -f "$RUN_DIR/$name.pid"
    in_ns setsid sh -c 'echo $$ >"$1"; shift; exec "$@"' sh "$RUN_DIR/$name.pid" \
      setpriv --reuid=nobody --regid=nogroup --clear-groups \
      "$PY" -m http.server "$REPO_PORT" --bind "$addr" --directory "$REPO_DIR" \
      </dev/null >"$RUN_DIR/$name.log" 2>&1 &
    for ((i = 0; i < 50; i++)); do [ -s "$RUN_DIR/$name.pid" ] && break; sleep 0.1; done
    pid=$(cat "$RUN_DIR/$name.pid" 2>/dev/null || true)
    [ -n "$pid" ] || die "HTTP server on $addr:$REPO_PORT did not start"
  fi
  for ((i = 0; i < 50; i++)); do           # <= ~10 s
    if in_ns "$PY" -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=1).read()' \
         "http://$addr:$REPO_PORT/Packages" 2>/dev/null; then
      say "apt repo served in $NS at http://$addr:$REPO_PORT (pid $pid)"
      return 0
    fi
    [ -e "/proc/$pid" ] || break
    sleep 0.2
  done
  die "HTTP server on $addr:$REPO_PORT not answering (see $RUN_DIR/$name.log)"
}

write_env_file() {
  cat >"$RUN_DIR/env.tmp" <<EOF
RUM_TEST_NS=$NS
RUM_TEST_USER=$TEST_USER
RUM_TEST_USER_HOME=$(getent passwd "$TEST_USER" | cut -d: -f6)
RUM_TEST_REPO_SLIRP=http://10.0.2.2:$REPO_PORT
RUM_TEST_REPO_NAT=http://$NAT_ADDR:$REPO_PORT
RUM_TEST_NAT_NETWORK=default
RUM_TEST_NAT_ADDR=$NAT_ADDR
EOF
  mv -f "$RUN_DIR/env.tmp" "$RUN_DIR/env"
}

cmd_start() {
  [ "$(id -u)" = 0 ] || die "must run as root (network namespaces, libvirtd)"
  check_tools
  local foreign
  foreign=$(foreign_daemons)
  [ -z "$foreign" ] || die "a libvirt daemon this environment did not start is running: ${foreign}- refusing (stop it, or use that host's libvirt by hand)"
  mkdir -p "$RUN_DIR"
  trap 'st=$?; if [ $st != 0 ]; then warn "start failed: undoing"; cmd_stop || true; fi' EXIT
  SECONDS=0
  fix_kvm
  start_shared_mnt
  start_ns
  start_daemon virtlogd
  write_libvirtd_conf
  start_daemon libvirtd -f "$RUN_DIR/libvirtd.conf"
  wait_socket
  record_preexisting
  start_network
  start_user
  build_repo
  serve_repo 127.0.0.1
  serve_repo "$NAT_ADDR"
  write_env_file
  trap - EXIT
  say "ready in ${SECONDS}s: namespace $NS, $SYS_URI + qemu:///session ($TEST_USER); commands for guests: test/e2e/rum-in-ns"
}

cmd_stop() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  local d n pid pids
  # 1. Domains and networks, through our libvirtd while it is still there.
  if [ -n "$(pid_of libvirtd libvirtd)" ] && [ -S "$SOCK" ]; then
    for d in $(virsh_sys list --all --name 2>/dev/null || true); do
      if [ "$(virsh_sys domstate "$d" 2>/dev/null)" != "shut off" ]; then
        say "destroying domain $d"; virsh_sys destroy "$d" >/dev/null 2>&1 || true
      fi
      if [[ $d == *rumtest* ]] || ! preexisting domain "$d"; then
        say "undefining domain $d"
        virsh_sys undefine --nvram "$d" >/dev/null 2>&1 || virsh_sys undefine "$d" >/dev/null 2>&1 || true
      fi
    done
    for n in $(virsh_sys net-list --all --name 2>/dev/null || true); do
      if [ "$(virsh_sys net-info "$n" 2>/dev/null | awk '$1 == "Active:" {print $2}')" = yes ]; then
        say "stopping network $n"; virsh_sys net-destroy "$n" >/dev/null 2>&1 || true
      fi
      preexisting network "$n" || { say "undefining network $n"; virsh_sys net-undefine "$n" >/dev/null 2>&1 || true; }
    done
  fi
  # 2. The test user's session domains (this spawns its session daemon in the namespace if
  #    none runs; step 4 ends it).
  if ns_exists && id "$TEST_USER" >/dev/null 2>&1; then
    for d in $(virsh_session list --all --name 2>/dev/null || true); do
      say "destroying + undefining session domain $d"
      virsh_session destroy "$d" >/dev/null 2>&1 || true
      virsh_session undefine --nvram "$d" >/dev/null 2>&1 || virsh_session undefine "$d" >/dev/null 2>&1 || true
    done
  fi
  # 3. What we started, by recorded PID.
  for n in 127.0.0.1 $(sed -n 's/^RUM_TEST_NAT_ADDR=//p' "$RUN_DIR/env" 2>/dev/null); do
    pid=$(pid_of "http-$n" python3); [ -z "$pid" ] || end_pid "apt repo server $n" "$pid"
  done
  for f in "$RUN_DIR"/http-*.pid; do       # a server whose address we no longer know
    [ -e "$f" ] || continue
    n=$(basename "$f" .pid); pid=$(pid_of "$n" python3); [ -z "$pid" ] || end_pid "$n" "$pid"
  done
  pid=$(pid_of libvirtd libvirtd); [ -z "$pid" ] || end_pid libvirtd "$pid"
  pid=$(pid_of virtlogd virtlogd); [ -z "$pid" ] || end_pid virtlogd "$pid"
  # 4. Anything left in the namespace (session daemons, QEMU, dnsmasq, clients): every
  #    process there was started by this environment or a test through it.
  if ns_exists; then
    pids=$(ip netns pids "$NS" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      for pid in $pids; do
        say "ending $(cat "/proc/$pid/comm" 2>/dev/null || echo '?') (pid $pid, left in $NS)"
        kill -TERM "$pid" 2>/dev/null || true
      done
      # shellcheck disable=SC2086
      if ! wait_gone 10 $pids; then
        for pid in $pids; do [ -e "/proc/$pid" ] && { warn "SIGKILL pid $pid"; kill -KILL "$pid" 2>/dev/null || true; }; done
        # shellcheck disable=SC2086
        wait_gone 5 $pids || warn "processes still in $NS: $(ip netns pids "$NS" | tr '\n' ' ')"
      fi
    fi
    say "deleting network namespace $NS"
    ip netns delete "$NS"
  fi
  # 5. Filesystems tests mounted under the shared mount point, then the point itself.
  if mountpoint -q "$RUN_DIR/mnt"; then
    for m in $(awk -v p="$RUN_DIR/mnt/" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r); do
      say "unmounting $m"; umount "$m" || warn "could not unmount $m"
    done
    umount "$RUN_DIR/mnt" || warn "could not unmount $RUN_DIR/mnt"
  fi
  rm -f "$RUN_DIR"/*.pid "$RUN_DIR/env" "$RUN_DIR/preexisting"
  rm -rf "$RUN_DIR/suite-cache"   # the image cache tests share (test/e2e/rum.ts): one suite's only
  say "stopped"
}

cmd_status() {
  local up=0 pid name
  if ns_exists; then say "namespace $NS: present"; else say "namespace $NS: absent"; up=1; fi
  for name in virtlogd libvirtd; do
    pid=$(pid_of $name $name)
    if [ -n "$pid" ]; then say "$name: running (pid $pid)"; else say "$name: not running"; up=1; fi
  done
  if [ -S "$SOCK" ] && [ -n "$(pid_of libvirtd libvirtd)" ]; then
    say "domains: $(virsh_sys list --all --name | tr '\n' ' ')"
    say "networks: $(virsh_sys net-list --name | tr '\n' ' ')"
  fi
  for f in "$RUN_DIR"/http-*.pid; do
    [ -e "$f" ] || { up=1; continue; }
    name=$(basename "$f" .pid); pid=$(pid_of "$name" python3)
    if [ -n "$pid" ]; then say "$name: running (pid $pid)"; else say "$name: not running"; up=1; fi
  done
  if ns_exists; then say "processes in $NS: $(ip netns pids "$NS" | wc -l)"; fi
  local foreign; foreign=$(foreign_daemons)
  [ -z "$foreign" ] || say "libvirt daemons outside $NS: $foreign"
  [ -f "$RUN_DIR/env" ] || up=1
  return $up
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  # libvirtd again after a test ended it (the fault tier); the rest of the environment stays.
  libvirtd) write_libvirtd_conf; start_daemon libvirtd -f "$RUN_DIR/libvirtd.conf"; wait_socket ;;
  *) echo "usage: $0 start|stop|status|libvirtd" >&2; exit 2 ;;
esac
