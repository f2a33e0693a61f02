"""Plan and submit a 1,000-shard run to the Slurm test cluster: sbatch calls and wall time.

    python bench/submit_1000.py [--shards 1000]

Needs the test cluster (make test-services). The jobs are submitted held (sbatch --hold) so
nothing runs, counted through a PATH shim in front of sbatch, then cancelled. The wall time
covers the whole ``submit()``: validation, corpus prepare, plan, one sbatch per window
(MaxArraySize from scontrol), the merge with its afterok dependency, and run.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jobs.demo import demo_model_path  # noqa: E402
from jobs.settings import SubmitRequest  # noqa: E402
from slurm.slurmcli import max_array_size  # noqa: E402
from jobs.submit import submit  # noqa: E402
from tests.fixtures.synthetic import synthetic_records  # noqa: E402

SHIM = '#!/bin/sh\necho x >> "$SBATCH_CALLS"\nexec {real} "$@"\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shards", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shim = root / "bin" / "sbatch"
        shim.parent.mkdir()
        shim.write_text(SHIM.format(real=shutil.which("sbatch")))
        shim.chmod(0o755)
        os.environ["PATH"] = f"{shim.parent}:{os.environ['PATH']}"
        os.environ["SBATCH_CALLS"] = str(root / "calls")
        profile = root / "held.toml"
        profile.write_text(
            (REPO / "slurm/profiles/testcluster.toml").read_text() + "\n[embed.sbatch_extra]\nhold = true\n"
        )
        request = SubmitRequest(
            run_dir=root / "run",
            shards=args.shards,
            profile=str(profile),
            identity={"model": str(demo_model_path())},
        )
        t0 = time.perf_counter()
        outcome, _, _ = submit(request, records=synthetic_records(args.shards * 10), say=lambda line: None)
        wall = time.perf_counter() - t0
        jobs = json.loads((root / "run" / "run.json").read_text())["jobs"]
        subprocess.run(["scancel", *(j["job_id"] for j in jobs)], check=True)
        calls = len((root / "calls").read_text().split())
    windows = sum(1 for j in jobs if j["stage"] == "embed")
    print(
        f"{len(outcome.pending)} shards, MaxArraySize {max_array_size()}: {windows} array windows + 1 merge"
    )
    print(f"  sbatch calls: {calls} (one per window plus the merge: {windows + 1})")
    print(f"  plan + submit wall time: {wall:.2f} s (target < 10 s)")


if __name__ == "__main__":
    main()
