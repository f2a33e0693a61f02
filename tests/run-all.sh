#!/usr/bin/env bash
# make test: two lanes side by side on the machine's cores.
#   host lane:  ruff, mypy, then every test outside tests/slurm (the CPU-heavy part) in two pytest workers;
#   Slurm lane: tests/slurm against Slurm 22.05 on this machine, then again inside the Debian
#               unstable root against Slurm 26.05 (slurm/testcluster/sid/run-tests.sh).
# The Slurm tests mostly wait on the scheduler, so they run beside the host's tests; the two clusters
# run one after the other, so their jobs never fight each other for the two cores.
# The Slurm lane's output is kept in a log and printed after the host's; the exit code fails if any lane does.
set -uo pipefail
cd "$(dirname "$0")/.."
# One compute thread per process (torch, BLAS, numba): the lanes already keep both cores busy with many
# processes, and two threads each only spin against each other (an embed task took 1.7x the CPU time).
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1
log="$(mktemp -t embedkit-slurm-XXXXXX.log)"
(
  echo "=== tests/slurm against Slurm 22.05 (this machine) ==="
  HF_HUB_OFFLINE=1 .venv/bin/python -m pytest tests/slurm -p no:cacheprovider --durations=10
  rc22=$?
  echo
  echo "=== tests/slurm against Slurm 26.05 (inside the Debian unstable root) ==="
  bash slurm/testcluster/sid/run-tests.sh tests/slurm -p no:cacheprovider --durations=10
  rc26=$?
  [ "$rc22" -eq 0 ] && [ "$rc26" -eq 0 ]
) > "$log" 2>&1 &
slurm_lane=$!
.venv/bin/ruff check -q .  # lint first: seconds, and a clear line when it fails
lint=$?
.venv/bin/ruff format --check -q . || { echo "ruff format: the files above are not formatted; run: .venv/bin/ruff format ."; lint=1; }
.venv/bin/mypy  # types over the packages ([tool.mypy] in pyproject.toml); under a minute, cached after
types=$?
# two workers (pytest-xdist; each module's tests in one, tests/conftest.py), so the host's tests fill both cores
# once the Slurm lane is done; the 30 slowest, to keep the suite in its time (docs/TESTING.md)
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest --ignore=tests/slurm -n 2 --durations=30
host=$?
wait "$slurm_lane"
slurm_rc=$?
echo
cat "$log"
rm -f "$log"
[ "$lint" -eq 0 ] && [ "$types" -eq 0 ] && [ "$host" -eq 0 ] && [ "$slurm_rc" -eq 0 ]
