#!/usr/bin/env bash
# Run tests/slurm (or the pytest arguments given) inside the Debian unstable root, against its
# Slurm 26.05 cluster: the client commands and the kit's .venv run in the root, as the jobs do.
# EMBEDKIT_TEST_CLUSTER=sid tells tests/slurm/conftest.py which cluster (profile, golden files).
# Usage: run-tests.sh [PYTEST ARGS...]   (make test runs it after the host's suite)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/../common.sh"
. "$HERE/root.sh"
LOG_TAG=testcluster-sid
[ "$(id -u)" -eq 0 ] || die "run as root (it enters a chroot)"
[ -f "$SID_ROOT/.embedkit-packages" ] && running slurmctld "$SID_ROOT" \
  || die "the Slurm 26.05 test cluster is not running: bash slurm/testcluster/sid/setup.sh"
# The root has no python3 to rebuild .venv with, should a test's make find it out of date.
make -s -q -C "$REPO" .venv/.done 2>/dev/null \
  || die "$REPO/.venv is missing or older than pyproject.toml: run make setup first"
mount_all  # no-op when mounted
[ $# -gt 0 ] || set -- tests/slurm
exec chroot "$SID_ROOT" env -i PATH="$ROOT_PATH" HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
  HF_HUB_OFFLINE=1 EMBEDKIT_TEST_CLUSTER=sid ${CI:+CI="$CI"} \
  ${OMP_NUM_THREADS:+OMP_NUM_THREADS="$OMP_NUM_THREADS" MKL_NUM_THREADS="$OMP_NUM_THREADS"} \
  ${OMP_NUM_THREADS:+OPENBLAS_NUM_THREADS="$OMP_NUM_THREADS" NUMBA_NUM_THREADS="$OMP_NUM_THREADS"} \
  bash -c 'cd "$1" && shift && exec .venv/bin/python -m pytest "$@"' run-tests "$REPO" "$@"
