"""Merge throughput and memory: merge of N x D float32 in S shards vs ``cat`` of the same shard bytes.

    python bench/merge_throughput.py [--rows 250000] [--dim 768] [--shards 16] [--also-rows 2000000]
    python bench/merge_throughput.py --checksums [--rows 2000000]   # merge with vs without the shards' checksums

Prints the wall time of ``cat shards/* > file`` (the floor: read and write every byte once),
of the same followed by an fsync (the merge makes its output durable, cat does not), and of
the merge (verify, stream, quality metrics, fsync, SHA-256 sidecar), all measured in the same
run from the same clean page-cache state (``sync`` first, shards cached), median of
--repeats; their ratio; and the merge's peak RSS. With --also-rows, everything again at that size.

The synthetic run is built in a child process: a merge child forked from a large parent would
inherit the parent's resident pages into its ru_maxrss.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BUILD_SNIPPET = """
import sys
from pathlib import Path
from tests.fixtures.synthetic import synthetic_run
synthetic_run(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), fast=True)
"""
CAT_FSYNC = 'cat "$@" > "$OUT" && sync "$OUT"'
TOGGLE_SNIPPET = """
import sys
from pathlib import Path
import h5py
names = ("checksums", "checksums-off") if sys.argv[2] == "off" else ("checksums-off", "checksums")
for path in sorted(Path(sys.argv[1]).glob("shards/shard-*.h5")):
    with h5py.File(path, "a") as h5:
        if names[0] in h5:
            h5.move(*names)  # a shard without "checksums" merges unverified (as shards written before them)
"""
MERGE_SNIPPET = """
import sys
from pathlib import Path
from jobs.merging import merge_run_folder
merge_run_folder(Path(sys.argv[1]))
"""


def timed_child(cmd: list[str], **kwargs) -> tuple[float, int]:
    """(wall seconds, peak RSS in MiB) of a child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[:3]} failed")
    return wall, usage.ru_maxrss // 1024


def _median(values: list[float]) -> float:
    return statistics.median(values)


def measure(workdir: Path, rows: int, dim: int, shards: int, repeats: int) -> dict:
    run = workdir / f"run-{rows}"
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", BUILD_SNIPPET, str(run), str(rows), str(shards), str(dim)],
        cwd=REPO,
        check=True,
    )
    build_s = time.perf_counter() - t0
    files = sorted(str(p) for p in (run / "shards").glob("shard-*.h5"))
    shard_bytes = sum(os.path.getsize(f) for f in files)
    sink = workdir / "cat.out"
    cat, cat_fsync, merge, rss = [], [], [], []
    for _ in range(repeats):
        subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)  # shards cached for all
        os.sync()
        with open(sink, "wb") as out:
            cat.append(timed_child(["cat", *files], stdout=out)[0])
        sink.unlink()
        os.sync()
        cat_fsync.append(
            timed_child(["bash", "-c", CAT_FSYNC, "cat", *files], env={**os.environ, "OUT": str(sink)})[0]
        )
        sink.unlink()
        os.sync()
        wall, peak = timed_child([sys.executable, "-c", MERGE_SNIPPET, str(run)], cwd=REPO)
        merge.append(wall)
        rss.append(peak)
    out_bytes = (run / "embeddings.h5").stat().st_size
    shutil.rmtree(run)
    return {
        "rows": rows,
        "shard_bytes": shard_bytes,
        "out_bytes": out_bytes,
        "build_s": build_s,
        "cat_s": _median(cat),
        "cat_fsync_s": _median(cat_fsync),
        "merge_s": _median(merge),
        "ratio": _median(merge) / _median(cat),
        "ratio_fsync": _median(merge) / _median(cat_fsync),
        "peak_rss_mib": max(rss),
    }


def merge_seconds(run: Path, repeats: int) -> float:
    """Median wall time of a merge of ``run`` (shards cached, the rest synced first)."""
    walls = []
    for _ in range(repeats):
        subprocess.run(
            ["cat", *map(str, run.glob("shards/shard-*.h5"))], stdout=subprocess.DEVNULL, check=True
        )
        os.sync()
        walls.append(timed_child([sys.executable, "-c", MERGE_SNIPPET, str(run)], cwd=REPO)[0])
    return _median(walls)


def compare_checksums(workdir: Path, rows: int, dim: int, shards: int, repeats: int) -> None:
    """Merges of one synthetic run with its shards' xxh3 checksums verified and without, alternating."""
    run = workdir / f"run-{rows}"
    subprocess.run(
        [sys.executable, "-c", BUILD_SNIPPET, str(run), str(rows), str(shards), str(dim)],
        cwd=REPO,
        check=True,
    )
    merge_seconds(run, 1)  # the first merge after the build is slower either way: not counted
    times: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(repeats):
        for state in ("off", "on"):
            subprocess.run([sys.executable, "-c", TOGGLE_SNIPPET, str(run), state], cwd=REPO, check=True)
            times[state].append(merge_seconds(run, 1))
    on, off = _median(times["on"]), _median(times["off"])
    print(f"{rows:,} x {dim} float32 in {shards} shards, merge median of {repeats} (alternating):")
    print(f"  without checksums : {off:.2f} s  {[round(t, 2) for t in times['off']]}")
    print(
        f"  with checksums    : {on:.2f} s  {[round(t, 2) for t in times['on']]}  "
        f"({(on / off - 1) * 100:+.1f} %, target within 10 %)"
    )
    shutil.rmtree(run)


def report(r: dict, dim: int, shards: int) -> None:
    print(
        f"{r['rows']:,} x {dim} float32 in {shards} shards ({r['shard_bytes'] / 2**20:,.0f} MiB of shards):"
    )
    print(f"  cat shards > file         : {r['cat_s']:.2f} s")
    print(f"  cat shards > file; fsync  : {r['cat_fsync_s']:.2f} s")
    print(
        f"  merge                     : {r['merge_s']:.2f} s  (ratio {r['ratio']:.2f}x cat, target <= 1.5x; "
        f"{r['ratio_fsync']:.2f}x cat+fsync)"
    )
    print(f"  merge peak RSS            : {r['peak_rss_mib']} MiB (target <= 128 MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--also-rows", type=int, default=0, help="measure peak RSS again at this size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where to build (needs ~2x the shard bytes)"
    )
    parser.add_argument("--checksums", action="store_true", help="merge time with vs without shard checksums")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="merge-bench-", dir=args.workdir))
    try:
        if args.checksums:
            compare_checksums(workdir, args.rows, args.dim, args.shards, args.repeats)
            return
        base = measure(workdir, args.rows, args.dim, args.shards, args.repeats)
        report(base, args.dim, args.shards)
        if args.also_rows:
            big = measure(workdir, args.also_rows, args.dim, args.shards, 1)
            report(big, args.dim, args.shards)
            print(
                f"  peak RSS {base['peak_rss_mib']} MiB at {base['rows']:,} rows vs {big['peak_rss_mib']} MiB "
                f"at {big['rows']:,} rows"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
