#!/usr/bin/env bash
# Install, configure and start a one-node Slurm cluster (Debian's slurm-wlm on this machine) with
# accounting and gres GPUs, ports 6817-6819. Idempotent: re-running starts whatever is not running
# and leaves the rest alone. Runs as root. Usage: setup.sh [--stop]
# sid/setup.sh starts a second cluster, Debian unstable's Slurm, in a chroot beside this one.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/common.sh"
LOG_TAG=testcluster
STATE="${SLURM_TEST_STATE:-/var/lib/embedkit-testcluster}"
LOG_HINT="$STATE/*.log"
MAX_ARRAY_SIZE="${SLURM_TEST_MAX_ARRAY_SIZE:-5}"
GPUS="${SLURM_TEST_GPUS:-4}"
CLUSTER=testcluster CTLD_PORT=6817 SLURMD_PORT=6818 DBD_PORT=6819 ROOT_DIR=/
INROOT=()

if [ "${1:-}" = "--stop" ]; then
  stop_daemons / slurmd slurmctld slurmdbd
  exit 0
fi
[ "$(id -u)" -eq 0 ] || die "run as root (it installs Debian packages and starts daemons)"
apt_install slurm-wlm slurmdbd mariadb-server munge

cluster_facts
mkdir -p "$STATE/ctld" "$STATE/d" /etc/slurm
for i in $(seq 0 $((GPUS - 1))); do : > "$STATE/gpu$i"; done
render "$HERE/slurm.conf.in" > /etc/slurm/slurm.conf.new
install_conf /etc/slurm/slurm.conf
render "$HERE/gres.conf.in" > /etc/slurm/gres.conf
cp "$HERE/job_submit.lua" /etc/slurm/job_submit.lua
render "$HERE/slurmdbd.conf.in" > /etc/slurm/slurmdbd.conf
chmod 600 /etc/slurm/slurmdbd.conf
start_munge
start_mariadb
start_slurm
reconfigure_if_changed
