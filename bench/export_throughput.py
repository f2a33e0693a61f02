"""Export time and memory: make export FORMAT=parquet vs a plain pyarrow.parquet.write_table.

    python bench/export_throughput.py [--rows 200000] [--dim 384] [--also-rows 800000] [--repeats 3]

Builds a merged run of N x D synthetic float32 vectors (with ids, titles, urls), then times, in
the same run and from the same page-cache state (the source read once before):
  - baseline: ``pq.write_table`` of the same arrays, already in memory (the table is built before
    the clock starts; defaults: snappy, dictionary, statistics), and again with the export's
    writer options (no dictionary, compression or statistics for the vectors);
  - export: ``export_run(run, "parquet")`` as make export runs it: verify the source against its
    sidecar, stream HDF5 blocks, write, fsync, SHA-256 sidecar, rename;
and the export's peak RSS (a child process each). With --also-rows, everything again at that size:
the export's peak RSS must stay flat while the baseline's grows with N.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BUILD = """
import sys
from pathlib import Path
from tests.fixtures.synthetic import synthetic_run
from jobs.merging import merge_run_folder
run = Path(sys.argv[1])
synthetic_run(run, int(sys.argv[2]), 4, int(sys.argv[3]), fast=True)
merge_run_folder(run)
"""
EXPORT = """
import sys, time
from pathlib import Path
from merge.exporter import export_run
t0 = time.perf_counter()
export_run(Path(sys.argv[1]), "parquet", float16=sys.argv[2] == "1")
print(time.perf_counter() - t0)
"""
BASELINE = """
import sys, time
from pathlib import Path
import h5py, pyarrow as pa, pyarrow.parquet as pq
run = Path(sys.argv[1])
with h5py.File(run / "embeddings.h5", "r") as h5:
    emb = h5["embeddings"][:]
    cols = {name: h5[ds][:] for ds, name in (("ids", "id"), ("titles", "title"), ("urls", "url"))}
table = pa.table({**{k: pa.array(v, pa.binary()).cast(pa.string()) for k, v in cols.items()},
                  "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])})
options = {}
if sys.argv[2] == "tuned":  # the export's writer options: no dictionary, compression or statistics for vectors
    from merge.export_parquet import writer_options
    options = writer_options(["id", "title", "url"])
t0 = time.perf_counter()
pq.write_table(table, run / "baseline.parquet", **options)
print(time.perf_counter() - t0)
"""


def child(snippet: str, *args: str) -> tuple[float, int]:
    """(seconds the child printed, its peak RSS in MiB)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", snippet, *args], stdout=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout is not None  # stdout=PIPE
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child failed: {snippet.splitlines()[3]}")
    return float(out.strip().splitlines()[-1]), usage.ru_maxrss // 1024


def measure(workdir: Path, rows: int, dim: int, repeats: int) -> dict:
    run = workdir / f"run-{rows}"
    subprocess.run(
        [sys.executable, "-c", BUILD, str(run), str(rows), str(dim)],
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stderr=subprocess.DEVNULL,
    )
    subprocess.run(["cat", str(run / "embeddings.h5")], stdout=subprocess.DEVNULL, check=True)  # cached
    base, tuned, export, export16 = [], [], [], []
    for _ in range(repeats):
        base.append(child(BASELINE, str(run), "plain"))
        tuned.append(child(BASELINE, str(run), "tuned"))
        export.append(child(EXPORT, str(run), "0"))
        export16.append(child(EXPORT, str(run), "1"))
    result = {
        "rows": rows,
        "dim": dim,
        "gb": rows * dim * 4 / 1e9,
        "baseline_s": statistics.median(t for t, _ in base),
        "baseline_rss_mib": max(m for _, m in base),
        "tuned_s": statistics.median(t for t, _ in tuned),
        "export_s": statistics.median(t for t, _ in export),
        "export_rss_mib": max(m for _, m in export),
        "export16_s": statistics.median(t for t, _ in export16),
        "export16_rss_mib": max(m for _, m in export16),
    }
    result["ratio"] = result["export_s"] / result["baseline_s"]
    for path in run.iterdir():
        path.unlink() if path.is_file() else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--also-rows", type=int, default=800_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for rows in [args.rows] + ([args.also_rows] if args.also_rows else []):
            r = measure(Path(tmp), rows, args.dim, args.repeats)
            print(
                f"N={r['rows']:,} x {r['dim']} ({r['gb']:.2f} GB float32): write_table {r['baseline_s']:.2f} s "
                f"(peak RSS {r['baseline_rss_mib']} MiB), with the export's options "
                f"{r['tuned_s']:.2f} s; export {r['export_s']:.2f} s = {r['ratio']:.2f}x "
                f"(peak RSS {r['export_rss_mib']} MiB); FLOAT16=1 export {r['export16_s']:.2f} s "
                f"(peak RSS {r['export16_rss_mib']} MiB)",
                flush=True,
            )


if __name__ == "__main__":
    main()
