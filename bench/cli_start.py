"""How long `make status` takes to answer: ``python -m jobs status`` on a finished run, against a bare
Python start and against ``import torch`` (what every CLI start cost before issue 32), in one run.

    python bench/cli_start.py --run runs/demo        # after make demo
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wall_s(argv: list[str]) -> float:
    """Seconds one command took, wall clock (its output discarded; a failure stops the bench)."""
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    """Time each command ``--repeat`` times, interleaved, and print the medians and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "demo", help="a finished run folder")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    if not (args.run / "run.json").is_file():
        raise SystemExit(f"{args.run} is not a run folder: run make demo first, or pass --run.")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "python -m jobs status": [sys.executable, "-m", "jobs", "status", "--run", str(args.run)],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeat):
        for name, argv in commands.items():
            times[name].append(wall_s(argv))
    base = statistics.median(times["python -c pass"])
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:28s} median {median:6.3f} s  (min {min(values):.3f}, {median / base:5.1f}x a bare start)"
        )


if __name__ == "__main__":
    main()
