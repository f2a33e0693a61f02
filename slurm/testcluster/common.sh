# Shared by setup.sh (the host's Slurm) and sid/setup.sh (Debian unstable's Slurm in a chroot).
# Sourced, not run. Both clusters run side by side on one machine, in one PID namespace, so a
# daemon is "ours" only if its /proc/PID/root is the cluster's root ("/" for the host's).

log() { printf '%s: %s\n' "${LOG_TAG:-testcluster}" "$*"; }
die() { printf '%s: %s\n' "${LOG_TAG:-testcluster}" "$*" >&2; exit 1; }

# own_pids NAME ROOT: the PIDs of processes named NAME whose root directory is ROOT. Debian from
# trixie on names the binaries slurmctld-wlm, slurmd-wlm (slurmctld is an alternatives link).
own_pids() {
  local pid
  for pid in $(pgrep -x "$1(-wlm)?" || true); do
    [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$2" ] && echo "$pid"
  done
  return 0
}
running() { [ -n "$(own_pids "$1" "$2")" ]; }

# stop_daemons ROOT NAME...: TERM the named daemons of that root only, then wait for them to go.
stop_daemons() {
  local root="$1" name pids; shift
  for name in "$@"; do
    pids="$(own_pids "$name" "$root")"
    [ -n "$pids" ] || continue
    log "stopping $name"
    kill $pids 2>/dev/null || true
    for _ in $(seq 1 40); do running "$name" "$root" || break; sleep 0.25; done
  done
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local seconds="$1" what="$2"; shift 2
  for _ in $(seq 1 $((seconds * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  die "$what did not come up; see the logs in ${LOG_HINT:-the state folder}"
}

# The compute nodes of both clusters, as NAME:GPU_TYPE: the type is the gres type (gpu:a100:2) and
# the node's Feature (--constraint=a100). Each node is a slurmd of its own (slurmd -N NAME) with its
# own Port= (NODE_PORT, NODE_PORT + 1, ...), spool, log, GPU placeholders and scratch under
# $STATE/nodes/NAME.
NODE_TYPES=(a100-1:a100 a100-2:a100 v100-1:v100)
GPUS_PER_NODE="${SLURM_TEST_GPUS_PER_NODE:-2}"
node_names() { local n; for n in "${NODE_TYPES[@]}"; do echo "${n%%:*}"; done; }
known_node() { node_names | grep -qx "$1"; }

# node_conf: the NodeName lines of slurm.conf. gres_conf: the gres.conf lines (typed, per node).
node_conf() {
  local i=0 n
  for n in "${NODE_TYPES[@]}"; do
    echo "NodeName=${n%%:*} NodeHostname=$HOST NodeAddr=$HOST Port=$((NODE_PORT + i)) CPUs=$CPUS" \
         "RealMemory=$((MEM_MB / ${#NODE_TYPES[@]})) Gres=gpu:${n#*:}:$GPUS_PER_NODE Feature=${n#*:} State=UNKNOWN"
    i=$((i + 1))
  done
}
gres_conf() {
  local n
  for n in "${NODE_TYPES[@]}"; do
    echo "NodeName=${n%%:*} Name=gpu Type=${n#*:} File=$STATE/nodes/${n%%:*}/gpu[0-$((GPUS_PER_NODE - 1))]"
  done
}

# render TEMPLATE [LINES_FUNCTION]: fill @VAR@ from the variables the caller set (HOST STATE CPUS
# MEM_MB MAX_ARRAY_SIZE CLUSTER CTLD_PORT DBD_PORT), and the line @NODES@ with LINES_FUNCTION's output.
render() {
  local nodes=""
  [ -n "${2:-}" ] && nodes="$("$2")"
  sed -e "s|@HOST@|$HOST|g" -e "s|@STATE@|$STATE|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEM_MB@|$MEM_MB|g" \
      -e "s|@MAX_ARRAY_SIZE@|$MAX_ARRAY_SIZE|g" -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
      -e "s|@DBD_PORT@|$DBD_PORT|g" "$1" | NODES="$nodes" awk '$0 == "@NODES@" {print ENVIRON["NODES"]; next} {print}'
}

# configure_cluster ETC: slurm.conf (as ETC/slurm.conf.new, for install_conf), gres.conf, the task
# prolog, job_submit.lua and slurmdbd.conf into ETC (as the root sees /etc/slurm), and each node's
# folder with its GPU placeholders: character devices (c 1 3, like /dev/null), replacing any regular
# file an older setup left.
configure_cluster() {
  local etc="$1" here="${BASH_SOURCE[0]%/*}" state="${ROOT_DIR%/}$STATE" node i dev
  mkdir -p "$state/ctld" "$etc"
  for node in $(node_names); do
    mkdir -p "$state/nodes/$node/spool" "$state/nodes/$node/tmp"
    for i in $(seq 0 $((GPUS_PER_NODE - 1))); do
      dev="$state/nodes/$node/gpu$i"
      [ -c "$dev" ] || { rm -f "$dev"; mknod "$dev" c 1 3; }
    done
  done
  rm -f "$state"/gpu[0-9]*  # the one-node cluster's regular-file placeholders
  render "$here/slurm.conf.in" node_conf > "$etc/slurm.conf.new"
  render "$here/gres.conf.in" gres_conf > "$etc/gres.conf.new"
  render "$here/task_prolog.sh" > "$etc/task_prolog.sh.new"
  chmod 755 "$etc/task_prolog.sh.new"
  install_conf "$etc/slurm.conf"
  install_conf "$etc/gres.conf"
  install_conf "$etc/task_prolog.sh"
  cp "$here/job_submit.lua" "$etc/job_submit.lua"
  render "$here/slurmdbd.conf.in" > "$etc/slurmdbd.conf"
  chmod 600 "$etc/slurmdbd.conf"
}

# apt_install PACKAGE...: install what is missing, waiting for a dpkg lock another apt holds.
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
}

# The caller sets INROOT (the command prefix that runs a command in the cluster's root: empty for
# the host's), ROOT_DIR ("/" or the chroot), STATE (as seen inside the root), CLUSTER, HOST and
# MAX_ARRAY_SIZE. inroot COMMAND... runs COMMAND there.
inroot() { "${INROOT[@]}" "$@"; }

start_munge() {
  if ! running munged "$ROOT_DIR"; then
    inroot bash -c '[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
      mkdir -p /run/munge /var/log/munge
      chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true'
    log "starting munged"
    inroot runuser -u munge -- /usr/sbin/munged
  fi
  wait_for 10 munge inroot bash -c 'munge -n | unmunge'
}

start_mariadb() {  # the root's own MariaDB, as its packages installed it
  # Asked on its own socket, not by process name: the 26.05 cluster's private mariadbd runs the
  # host's binary from the host's root, and must not pass for the host's server.
  if ! inroot mysqladmin ping >/dev/null 2>&1; then
    log "starting mariadb"
    inroot bash -c 'mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld'
    ("${INROOT[@]}" mysqld_safe --skip-syslog > "${ROOT_DIR%/}$STATE/mysqld_safe.log" 2>&1 &)
  fi
  wait_for 60 mariadb inroot mysqladmin ping
}

# start_slurm: start whatever of slurmdbd, slurmctld and the nodes' slurmd is not running in this root.
start_slurm() {
  if ! running slurmdbd "$ROOT_DIR"; then log "starting slurmdbd"; inroot slurmdbd; fi
  wait_for 60 slurmdbd inroot sacctmgr -n list cluster
  if ! inroot sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    inroot sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
  if ! running slurmctld "$ROOT_DIR"; then log "starting slurmctld"; inroot slurmctld; fi
  wait_for 60 slurmctld inroot scontrol ping
  local node
  for node in $(node_names); do start_node_daemon "$node"; done
  wait_for 60 "the nodes" nodes_up
  log "up: $(inroot sinfo -h -N -p gpu -o '%N %T %G %f' | tr '\n' ';' | sed 's/;$//; s/;/; /g'); MaxArraySize=$MAX_ARRAY_SIZE"
}

# node_pids NODE: the pids of `slurmd -N NODE` in this root. stray_slurmd: the pids of any other
# slurmd there (the one-node cluster's plain `slurmd`, or a node no longer configured).
node_pids() {
  local pid
  for pid in $(own_pids slurmd "$ROOT_DIR"); do
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -Eq -- "-N $1( |$)" && echo "$pid"
  done
  return 0
}
stray_slurmd() {
  local pid
  for pid in $(own_pids slurmd "$ROOT_DIR"); do
    known_node "$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | sed -nE 's/.*-N ([^ ]+).*/\1/p')" || echo "$pid"
  done
  return 0
}

start_node_daemon() {  # start_node_daemon NODE: its slurmd, unless it runs
  [ -n "$(node_pids "$1")" ] && return 0
  log "starting slurmd -N $1"
  inroot slurmd -N "$1"
}

# nodes_up: every node answers (idle, mixed or allocated, not drained or down).
nodes_up() {
  local up
  up="$(inroot sinfo -h -N -p gpu -o '%N %T' | awk '$2 ~ /^(idle|mixed|allocated|completing)$/' | wc -l)"
  [ "$up" -eq "${#NODE_TYPES[@]}" ]
}

# restart_if_changed: slurm.conf, gres.conf or the prolog changed (nodes added or renamed, a new
# partition): the daemons are stopped here and start_slurm starts them with the new files. Stray
# slurmd (the one-node cluster's) go too.
restart_if_changed() {
  local stray
  stray="$(stray_slurmd)"
  if [ -n "$stray" ]; then log "stopping slurmd not of a configured node"; kill $stray 2>/dev/null || true; fi
  [ "$CONF_CHANGED" -eq 1 ] || return 0
  log "the configuration changed: restarting slurmctld and the nodes"
  stop_daemons "$ROOT_DIR" slurmd slurmctld
}

# cluster_facts: the values render needs that come from this machine.
cluster_facts() {
  HOST="$(hostname -s)"
  CPUS="$(nproc)"
  MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
}

# install_conf PATH: move PATH.new over PATH if they differ, and remember to restart the daemons.
CONF_CHANGED=0
install_conf() {
  if cmp -s "$1.new" "$1"; then rm -f "$1.new"; return 0; fi
  [ -e "$1" ] && CONF_CHANGED=1  # a first one is read when the daemons start
  mv "$1.new" "$1"
}
