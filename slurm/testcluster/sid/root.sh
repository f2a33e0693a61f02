# The Debian unstable root of the second test cluster: where it is, what is mounted into it, and
# how to run a command inside it. Sourced by setup.sh and run-tests.sh (after ../common.sh).
SID_BASE="${SLURM_SID_BASE:-/var/lib/embedkit-testcluster-sid}"
SID_ROOT="$SID_BASE/root"
ROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"

# The Debian mirror this machine's apt uses (no host name is written down anywhere).
debian_mirror() {
  local uri
  uri="$(apt-get indextargets --format '$(REPO_URI) $(LABEL)' 2>/dev/null | awk '$2 == "Debian" {print $1; exit}')"
  [ -n "$uri" ] || die "found no Debian mirror in this machine's apt sources (apt-get update first?)"
  echo "$uri"
}

# The installation .venv's python comes from (e.g. /root/.pyenv/versions/3.11.7), to mount as is.
python_prefix() {
  local home
  home="$(awk -F' *= *' '$1 == "home" {print $2}' "$REPO/.venv/pyvenv.cfg" 2>/dev/null)"
  [ -n "$home" ] || die "no $REPO/.venv yet: run make setup first"
  home="$(dirname "$(readlink -f "$home/python3")")"
  case "$home" in
    /usr/bin|/bin) die ".venv is made from the system Python ($home): make it with PYTHON=<a Python" \
                       "installed outside /usr (pyenv, conda)> make setup, so the chroot can mount it" ;;
  esac
  dirname "$home"
}

bind() {  # bind SRC DST: mount SRC at DST unless SRC itself is mounted there already
  if mountpoint -q "$2"; then
    # A folder deleted and made anew at the same path (a fresh clone where the last one was)
    # leaves the old, deleted folder mounted: compare device and inode, and mount again.
    [ "$(stat -c %d:%i "$1")" = "$(stat -c %d:%i "$2")" ] && return 0
    umount -l "$2"
  fi
  mkdir -p "$2"
  mount --rbind "$1" "$2"
  mount --make-rslave "$2"
}

mount_system() {  # mount_system ROOT: /proc, /dev, /sys for apt and the daemons
  mountpoint -q "$1/proc" || mount -t proc proc "$1/proc"
  bind /dev "$1/dev"
  bind /sys "$1/sys"
}

mount_all() {  # the system folders, the repository and (once .venv exists) its Python, at their own paths
  mount_system "$SID_ROOT"
  bind "$REPO" "$SID_ROOT$REPO"
  [ -f "$REPO/.venv/pyvenv.cfg" ] || return 0  # make setup makes it; run-tests.sh mounts again then
  local prefix
  prefix="$(python_prefix)"
  bind "$prefix" "$SID_ROOT$prefix"
}

unmount_all() {  # unmount_all ROOT: everything mounted under ROOT, deepest first
  local target
  [ -d "$1" ] || return 0
  for target in $(findmnt -rn -o TARGET | grep -E "^$1(/|$)" | sort -r); do
    umount -l "$target" 2>/dev/null || true
  done
}

# The prefix that runs a command inside the root, with a clean environment (see inroot in common.sh).
INROOT=(chroot "$SID_ROOT" env -i PATH="$ROOT_PATH" HOME=/root LANG=C.UTF-8)
