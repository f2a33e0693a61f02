#!/usr/bin/env bash
# Install, configure and start a three-node Slurm cluster (Debian's slurm-wlm on this machine) with
# accounting and typed gres GPUs: nodes a100-1 and a100-2 (2 a100 each), v100-1 (2 v100), each a
# `slurmd -N <node>` of its own; ports 6817 (slurmctld), 6819 (slurmdbd), 6821-6823 (the nodes).
# Idempotent: re-running starts whatever is not running and leaves the rest alone (a changed
# configuration restarts slurmctld and the nodes). Runs as root.
# Usage: setup.sh [--stop | --kill-node NODE | --start-node NODE]
#   --kill-node NODE   lose NODE as a machine is lost: its slurmd and its jobs' processes killed, DOWN
#   --start-node NODE  bring it back (its slurmd, then RESUME)
# sid/setup.sh starts a second cluster, Debian unstable's Slurm, in a chroot beside this one.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/common.sh"
LOG_TAG=testcluster
STATE="${SLURM_TEST_STATE:-/var/lib/embedkit-testcluster}"
LOG_HINT="$STATE/*.log $STATE/nodes/*/slurmd.log"
MAX_ARRAY_SIZE="${SLURM_TEST_MAX_ARRAY_SIZE:-5}"
CLUSTER=testcluster CTLD_PORT=6817 NODE_PORT=6821 DBD_PORT=6819 ROOT_DIR=/
INROOT=()

case "${1:-}" in
  --stop) stop_daemons / slurmd slurmctld slurmdbd; exit 0 ;;
  --kill-node) exec bash "$HERE/node.sh" kill "${2:?usage: setup.sh --kill-node NODE}" ;;
  --start-node) exec bash "$HERE/node.sh" start "${2:?usage: setup.sh --start-node NODE}" ;;
  "") ;;
  *) die "unknown option $1 (use --stop, --kill-node NODE or --start-node NODE)" ;;
esac
[ "$(id -u)" -eq 0 ] || die "run as root (it installs Debian packages and starts daemons)"
apt_install slurm-wlm slurmdbd mariadb-server munge

cluster_facts
configure_cluster /etc/slurm
restart_if_changed
start_munge
start_mariadb
start_slurm
