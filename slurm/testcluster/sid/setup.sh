#!/usr/bin/env bash
# A second test cluster: Debian unstable's Slurm (26.05) in a chroot, beside the host's (setup.sh,
# Slurm 22.05), with the same three nodes (a100-1, a100-2: 2 a100 each; v100-1: 2 v100; each a
# `slurmd -N <node>` of its own), typed gres on character-device placeholders, MaxArraySize=5. Its
# own ports (6827 slurmctld, 6829 slurmdbd, 6831-6833 the nodes), munge key and socket, MariaDB
# (socket only, no TCP), state folder.
# The database is a private MariaDB instance run from the host's (bookworm, 10.11) binary: sid's
# MariaDB 11.8 server fails slurmdbd 26.05's first query ("5027 Number of columns in result set
# exceeds maximum allowed number of columns", _check_mysql_concat_is_sane), 10.11 does not.
# The jobs' Python is the kit's own .venv: the repository and the Python installation that .venv
# was made from are bind-mounted into the root at the same paths (sid's Python is 3.14, for which
# PyPI has no CPU torch).
# Idempotent and cached: the root is built once (debootstrap and apt, ~2 min) and reused; a
# re-run only mounts and starts what is not running (under a second). Runs as root.
# Usage: setup.sh [--stop | --remove | --kill-node NODE | --start-node NODE]
#   --remove also deletes the root (the next run rebuilds it); --kill-node / --start-node lose a node
#   and bring it back, as ../setup.sh does for the host's cluster.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/../common.sh"
. "$HERE/root.sh"
LOG_TAG=testcluster-sid
STATE=/var/lib/embedkit-testcluster  # inside the root
LOG_HINT="$SID_ROOT$STATE/*.log $SID_ROOT$STATE/nodes/*/slurmd.log"
MAX_ARRAY_SIZE="${SLURM_TEST_MAX_ARRAY_SIZE:-5}"
CLUSTER=testcluster26 CTLD_PORT=6827 NODE_PORT=6831 DBD_PORT=6829 ROOT_DIR="$SID_ROOT"
PACKAGES=(slurmctld slurmd slurmdbd slurm-client munge lua5.1 make
          libffi8 libnsl2 libsqlite3-0 libgomp1)  # the last four: the host-built Python and torch

DB_DIR="$SID_BASE/mariadb" DB_PID="$SID_BASE/mariadb/mariadbd.pid" DB_SOCK="$SID_ROOT/run/mariadbd/mysqld.sock"  # libmariadb's default in sid
db_running() { [ -s "$DB_PID" ] && [ "$(cat "/proc/$(cat "$DB_PID")/comm" 2>/dev/null)" = mariadbd ]; }
stop_private_mariadb() { db_running && { log "stopping mariadb"; kill "$(cat "$DB_PID")"; } || true; }

start_private_mariadb() {  # its datadir in $SID_BASE, its socket where the root's clients look
  apt_install mariadb-server
  mkdir -p "${DB_SOCK%/*}" && chown mysql:mysql "${DB_SOCK%/*}"
  if [ ! -d "$DB_DIR/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$DB_DIR" --user=mysql \
      --auth-root-authentication-method=socket > "$SID_BASE/mariadb-install.log" 2>&1 \
      || die "mariadb-install-db failed; see $SID_BASE/mariadb-install.log"
  fi
  if ! db_running; then
    log "starting mariadb"; rm -f "$DB_SOCK"
    (setsid mariadbd --no-defaults --datadir="$DB_DIR" --socket="$DB_SOCK" --pid-file="$DB_PID" \
      --skip-networking --user=mysql --log-error="$DB_DIR/mariadbd.err" > /dev/null 2>&1 &)
  fi
  wait_for 60 mariadb mysqladmin --no-defaults --socket="$DB_SOCK" ping
}

case "${1:-}" in
  --stop) stop_daemons "$SID_ROOT" slurmd slurmctld slurmdbd munged; stop_private_mariadb; exit 0 ;;
  --remove) bash "$0" --stop; unmount_all "$SID_ROOT"; rm -rf --one-file-system "$SID_BASE"; exit 0 ;;
  --kill-node) mount_all; exec "${INROOT[@]}" bash "$REPO/slurm/testcluster/node.sh" kill "${2:?usage: setup.sh --kill-node NODE}" ;;
  --start-node) mount_all; exec "${INROOT[@]}" bash "$REPO/slurm/testcluster/node.sh" start "${2:?usage: setup.sh --start-node NODE}" ;;
  "") ;;
  *) die "unknown option $1 (use --stop, --remove, --kill-node NODE or --start-node NODE)" ;;
esac
[ "$(id -u)" -eq 0 ] || die "run as root (it builds a chroot and starts daemons)"

build_root() {  # debootstrap into root.partial, install the packages, then rename: never half a root
  local partial="$SID_BASE/root.partial" mirror
  unmount_all "$partial"
  rm -rf --one-file-system "$partial"
  mkdir -p "$SID_BASE"
  apt_install debootstrap
  mirror="$(debian_mirror)"
  log "building Debian unstable in $SID_ROOT from $mirror (about a minute, once)"
  debootstrap --variant=minbase sid "$partial" "$mirror" > "$SID_BASE/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $SID_BASE/debootstrap.log"
  mount_system "$partial"
  install_packages "$partial"
  unmount_all "$partial"
  mv "$partial" "$SID_ROOT"
}

configure() {  # render the shared templates with this cluster's ports into the root
  cluster_facts
  cp /etc/hosts "$SID_ROOT/etc/hosts"  # the host's name (every node's address) resolves as on the host
  configure_cluster "$SID_ROOT/etc/slurm"
}

install_packages() {  # install_packages ROOT: PACKAGES into ROOT, then note which are there
  # (unstable's Release files may be older than their Valid-Until on a machine with a set clock)
  chroot "$1" env -i PATH="$ROOT_PATH" DEBIAN_FRONTEND=noninteractive bash -c \
    'apt-get -o Acquire::Check-Valid-Until=false update -qq &&
     apt-get -o Acquire::Check-Valid-Until=false install -y -qq --no-install-recommends "$@"' \
    apt "${PACKAGES[@]}" > "$SID_BASE/apt.log" 2>&1 || die "apt-get in the root failed; see $SID_BASE/apt.log"
  printf '%s\n' "${PACKAGES[@]}" > "$1/.embedkit-packages"
}

ensure_packages() {  # a cached root made from an older package list gets what is new
  [ "$(printf '%s\n' "${PACKAGES[@]}")" = "$(cat "$SID_ROOT/.embedkit-packages")" ] && return 0
  log "installing into the root: ${PACKAGES[*]}"
  install_packages "$SID_ROOT"
}

[ -f "$SID_ROOT/.embedkit-packages" ] || build_root
mount_all
ensure_packages
configure
restart_if_changed
start_munge
start_private_mariadb
start_slurm
