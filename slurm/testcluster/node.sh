#!/usr/bin/env bash
# Lose one node of a test cluster as a machine is lost, and bring it back:
#   node.sh kill NODE    its slurmd, its slurmstepds and every process of its jobs killed at once
#                        (SIGKILL: nothing reports back), then the node set DOWN: Slurm requeues its
#                        jobs onto the other nodes
#   node.sh start NODE   its slurmd started again, the node RESUMEd
# It acts on the cluster the Slurm commands here talk to, from inside that cluster's root: on the host
# for setup.sh's (22.05), inside the chroot for sid/setup.sh's (26.05), where the tests run. Both roots
# share one PID namespace, so processes are told apart by what is in this root only: the node's pid file
# and the jobs' SLURM_CLUSTER_NAME. setup.sh --kill-node / --start-node (and sid/'s) run this. Root only.
set -euo pipefail
action="${1:-}" node="${2:-}"
die() { printf 'testcluster node: %s\n' "$*" >&2; exit 1; }
[ -n "$node" ] && { [ "$action" = kill ] || [ "$action" = start ]; } || die "usage: node.sh kill|start NODE"
config() { scontrol show config | awk -v k="$1" '$1 == k {print $3}'; }
cluster="$(config ClusterName)"
pid_file="$(config SlurmdPidFile)"; pid_file="${pid_file//%n/$node}"
scontrol show node "$node" >/dev/null 2>&1 || die "no node $node in cluster $cluster: $(sinfo -h -N -o %N | sort -u | tr '\n' ' ')"

slurmd_pid() {  # the node's slurmd, from its pid file (the other root's node of the same name has its own)
  local pid
  pid="$(cat "$pid_file" 2>/dev/null || true)"
  [ -n "$pid" ] && grep -Eq '^slurmd(-wlm)?$' "/proc/$pid/comm" 2>/dev/null && echo "$pid"
  return 0
}

job_pids() {  # processes of this cluster's jobs on the node, and the slurmstepds above them
  local pid env parent
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    env="$(tr '\0' '\n' 2>/dev/null < "/proc/$pid/environ" || true)"
    grep -qx "SLURMD_NODENAME=$node" <<< "$env" && grep -qx "SLURM_CLUSTER_NAME=$cluster" <<< "$env" || continue
    echo "$pid"
    parent="$pid"
    while parent="$(awk '{print $4}' "/proc/$parent/stat" 2>/dev/null)" && [ "${parent:-1}" -gt 1 ]; do
      grep -Eq '^slurmstepd' "/proc/$parent/comm" 2>/dev/null && echo "$parent"
    done
  done | sort -u
}

if [ "$action" = kill ]; then
  pids=($(slurmd_pid) $(job_pids))
  echo "testcluster node: killing node $node of $cluster (${#pids[@]} processes: slurmd, slurmstepd, job processes)"
  [ ${#pids[@]} -eq 0 ] || kill -9 "${pids[@]}" 2>/dev/null || true
  scontrol update nodename="$node" state=down reason="node lost (testcluster node.sh kill)"
  echo "testcluster node: $node is $(sinfo -h -N -n "$node" -o '%T' | head -1)"
else
  for try in $(seq 1 120); do  # 60 s; a slurmd that did not come up is started again every 10 s
    [ -n "$(slurmd_pid)" ] || [ $((try % 20)) -ne 1 ] || slurmd -N "$node"
    scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
    sinfo -h -N -n "$node" -o '%T' | head -1 | grep -Eq '^(idle|mixed|allocated|completing)$' && break
    sleep 0.5
  done
  echo "testcluster node: $node is $(sinfo -h -N -n "$node" -o '%T' | head -1)"
fi
