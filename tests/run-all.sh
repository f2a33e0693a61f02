#!/usr/bin/env bash
# make test: the whole suite on this machine (Slurm 22.05) and, at the same time, tests/slurm
# inside the Debian unstable root against Slurm 26.05 (slurm/testcluster/sid/run-tests.sh).
# The Slurm tests mostly wait on the scheduler, so running the two together saves wall time.
# The 26.05 output is kept in a log and printed after the host's; the exit code fails if either does.
set -uo pipefail
cd "$(dirname "$0")/.."
log="$(mktemp -t embedkit-slurm26-XXXXXX.log)"
bash slurm/testcluster/sid/run-tests.sh tests/slurm -p no:cacheprovider > "$log" 2>&1 &
sid=$!
.venv/bin/ruff check -q .  # lint first: seconds, and a clear line when it fails
lint=$?
.venv/bin/ruff format --check -q . || { echo "ruff format: the files above are not formatted; run: .venv/bin/ruff format ."; lint=1; }
.venv/bin/mypy  # types over the packages ([tool.mypy] in pyproject.toml); under a minute, cached after
types=$?
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest
host=$?
wait "$sid"
sid_rc=$?
echo
echo "=== tests/slurm against Slurm 26.05 (inside the Debian unstable root) ==="
cat "$log"
rm -f "$log"
[ "$lint" -eq 0 ] && [ "$types" -eq 0 ] && [ "$host" -eq 0 ] && [ "$sid_rc" -eq 0 ]
