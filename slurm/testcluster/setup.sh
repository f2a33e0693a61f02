#!/usr/bin/env bash
# Install, configure and start a one-node Slurm cluster with accounting and gres GPUs.
# Idempotent: re-running starts whatever is not running and leaves the rest alone.
# Runs as root (Debian's slurm-wlm, slurmdbd, mariadb-server, munge). Usage: setup.sh [--stop]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
STATE="${SLURM_TEST_STATE:-/var/lib/embedkit-testcluster}"
MAX_ARRAY_SIZE="${SLURM_TEST_MAX_ARRAY_SIZE:-5}"
GPUS="${SLURM_TEST_GPUS:-4}"
HOST="$(hostname -s)"
log() { printf 'testcluster: %s\n' "$*"; }

if [ "${1:-}" = "--stop" ]; then
  pkill -x slurmd || true; pkill -x slurmctld || true; pkill -x slurmdbd || true
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "testcluster: run as root (it installs Debian packages and starts daemons)" >&2; exit 1; }

packages=(slurm-wlm slurmdbd mariadb-server munge)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$STATE/ctld" "$STATE/d" /etc/slurm /run/munge /var/log/munge
for i in $(seq 0 $((GPUS - 1))); do : > "$STATE/gpu$i"; done
cpus="$(nproc)"
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
render() {
  sed -e "s|@HOST@|$HOST|g" -e "s|@STATE@|$STATE|g" -e "s|@CPUS@|$cpus|g" -e "s|@MEM_MB@|$mem_mb|g" \
      -e "s|@GPUS@|$GPUS|g" -e "s|@LAST_GPU@|$((GPUS - 1))|g" -e "s|@MAX_ARRAY_SIZE@|$MAX_ARRAY_SIZE|g" "$1"
}
render "$HERE/slurm.conf.in" > /etc/slurm/slurm.conf
render "$HERE/gres.conf.in" > /etc/slurm/gres.conf
render "$HERE/slurmdbd.conf.in" > /etc/slurm/slurmdbd.conf
chmod 600 /etc/slurm/slurmdbd.conf

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local seconds="$1" what="$2"; shift 2
  for _ in $(seq 1 $((seconds * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "testcluster: $what did not come up; see $STATE/*.log" >&2; return 1
}

if ! pgrep -x munged >/dev/null; then
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged
fi
wait_for 10 munge bash -c 'munge -n | unmunge'

if ! pgrep -f mysqld >/dev/null; then
  log "starting mariadb"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  (mysqld_safe --skip-syslog > "$STATE/mysqld_safe.log" 2>&1 &)
fi
wait_for 60 mariadb mysqladmin ping

if ! pgrep -x slurmdbd >/dev/null; then
  log "starting slurmdbd"
  slurmdbd
fi
wait_for 60 slurmdbd sacctmgr -n list cluster

if ! sacctmgr -n -P list cluster format=cluster | grep -qx testcluster; then
  sacctmgr -i add cluster testcluster >/dev/null
fi
if ! pgrep -x slurmctld >/dev/null; then
  log "starting slurmctld"
  slurmctld
fi
wait_for 60 slurmctld scontrol ping
if ! pgrep -x slurmd >/dev/null; then
  log "starting slurmd"
  slurmd
fi
wait_for 60 "the node" bash -c "sinfo -h -N -o '%T' | grep -Eq '^(idle|mixed|allocated)'"
scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
log "up: $(sinfo -h -o '%P %D %T %G') MaxArraySize=$MAX_ARRAY_SIZE"
