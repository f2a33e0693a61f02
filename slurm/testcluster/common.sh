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

# render TEMPLATE: fill @VAR@ from the variables the caller set (HOST STATE CPUS MEM_MB GPUS
# MAX_ARRAY_SIZE CLUSTER CTLD_PORT SLURMD_PORT DBD_PORT).
render() {
  sed -e "s|@HOST@|$HOST|g" -e "s|@STATE@|$STATE|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEM_MB@|$MEM_MB|g" \
      -e "s|@GPUS@|$GPUS|g" -e "s|@LAST_GPU@|$((GPUS - 1))|g" -e "s|@MAX_ARRAY_SIZE@|$MAX_ARRAY_SIZE|g" \
      -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
      -e "s|@DBD_PORT@|$DBD_PORT|g" "$1"
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

# start_slurm: start whatever of slurmdbd, slurmctld and slurmd is not running in this root.
start_slurm() {
  if ! running slurmdbd "$ROOT_DIR"; then log "starting slurmdbd"; inroot slurmdbd; fi
  wait_for 60 slurmdbd inroot sacctmgr -n list cluster
  if ! inroot sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    inroot sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
  if ! running slurmctld "$ROOT_DIR"; then log "starting slurmctld"; inroot slurmctld; fi
  wait_for 60 slurmctld inroot scontrol ping
  if ! running slurmd "$ROOT_DIR"; then log "starting slurmd"; inroot slurmd; fi
  wait_for 60 "the node" inroot bash -c "sinfo -h -N -o '%T' | grep -Eq '^(idle|mixed|allocated)'"
  inroot scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
  log "up: $(inroot sinfo -h -o '%P %D %T %G' | tr '\n' ' ')MaxArraySize=$MAX_ARRAY_SIZE"
}

# cluster_facts: the values render needs that come from this machine.
cluster_facts() {
  HOST="$(hostname -s)"
  CPUS="$(nproc)"
  MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
}

# install_conf PATH: move PATH.new over PATH if they differ, and remember to tell slurmctld.
CONF_CHANGED=0
install_conf() {
  if cmp -s "$1.new" "$1"; then rm -f "$1.new"; return 0; fi
  [ -e "$1" ] && CONF_CHANGED=1  # a first one is read when the daemons start
  mv "$1.new" "$1"
}
# reconfigure_if_changed: a running slurmctld/slurmd reread slurm.conf (new partitions, plugins).
reconfigure_if_changed() {
  [ "$CONF_CHANGED" -eq 1 ] || return 0
  log "slurm.conf changed: scontrol reconfigure"
  inroot scontrol reconfigure
  sleep 2  # from 24.05 on, slurmctld restarts itself on reconfigure and the node registers again
  wait_for 60 slurmctld inroot scontrol ping
  wait_for 60 "the node" inroot bash -c "sinfo -h -N -o '%T' | grep -Eq '^(idle|mixed|allocated)'"
}
