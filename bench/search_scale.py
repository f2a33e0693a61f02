"""Search at scale: exact search against faiss.IndexFlatIP, the index, and the binary + int8 copies.

    python bench/search_scale.py [--rows 1000000] [--dim 384] [--rounds 3] [--kinds hnsw,ivf-pq]
                                 [--workdir DIR] [--quick]

Writes N x D synthetic vectors with cluster structure (bench/search_data.py) as a merged
embeddings.h5 (kept in --workdir for the next run), reads it once into the page cache, then runs
each measurement in its own process (bench/search_phases.py) and samples that process's memory
(/proc/PID/status: RssAnon, the heap; RssFile, pages of mapped files, shared with the page
cache) every 20 ms:

- exact: the kit's exact search and faiss.IndexFlatIP (faiss's default, and BLAS from 20 queries),
  alternated ``--rounds`` times, medians: a single question's latency, queries/s of a batch of 256;
- for each index kind: build time and memory, recall@10 against exact on the same 256 queries,
  latency and queries/s;
- the int8 and binary copies: write time, size, the recall they record; binary candidates
  rescored with int8: latency, queries/s, recall@10.

``--quick``: 100,000 rows and one round, for trying changes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.search_data import write_embeddings

PHASES = Path(__file__).with_name("search_phases.py")


def _status_kib(pid: int) -> dict[str, int]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    fields = (line.split(":") for line in text.splitlines() if line.startswith(("RssAnon", "RssFile")))
    return {name: int(value.split()[0]) for name, value in fields}


def child(*args: str) -> dict:
    """Run one phase; its JSON result plus ``anon_mib``/``file_mib`` (peaks) and ``seconds``."""
    proc = subprocess.Popen([sys.executable, str(PHASES), *args], stdout=subprocess.PIPE, text=True)
    peaks = {"RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            for name, kib in _status_kib(proc.pid).items():
                peaks[name] = max(peaks[name], kib)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    out, _ = proc.communicate()
    done.set()
    if proc.returncode != 0:
        raise SystemExit(f"phase {args} failed ({proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    return {
        **result,
        "anon_mib": peaks["RssAnon"] / 1024,
        "file_mib": peaks["RssFile"] / 1024,
        "wall_s": time.perf_counter() - t0,
    }


def median_of(runs: list[dict]) -> dict:
    """Per numeric key, the median over ``runs``; memory keys: the maximum."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    return {k: (max if k.endswith("_mib") else statistics.median)(r[k] for r in runs) for k in keys}


def prepare(workdir: Path, rows: int, dim: int) -> Path:
    folder = workdir / f"search-{rows}x{dim}"
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "embeddings.h5"
    if not source.exists():
        t0 = time.perf_counter()
        write_embeddings(source, rows, dim)
        print(f"wrote {source} in {time.perf_counter() - t0:.1f} s", flush=True)
    subprocess.run(["cat", str(source)], stdout=subprocess.DEVNULL, check=True)  # into the page cache
    return folder


def run(folder: Path, rounds: int, kinds: list[str]) -> dict:
    results: dict = {"exact": [], "faiss": []}
    for _ in range(rounds):  # alternated: a shared machine's load falls on both alike
        results["exact"].append(child("exact", str(folder)))
        results["faiss"].append(child("faiss", str(folder)))
        print(f"exact {results['exact'][-1]}\nfaiss {results['faiss'][-1]}", flush=True)
    for kind in kinds:
        results[f"build-{kind}"] = child("build", str(folder), kind)
        results[f"index-{kind}"] = child("index", str(folder))
        print(f"{kind}: {results[f'build-{kind}']}\n{results[f'index-{kind}']}", flush=True)
    results["compact"] = child("compact", str(folder))
    results["binary"] = child("binary", str(folder))
    print(f"compact {results['compact']}\nbinary {results['binary']}", flush=True)
    return results


def summary(results: dict, kinds: list[str]) -> list[str]:
    """The lines BENCHMARKS.md quotes."""
    kit, flat = median_of(results["exact"]), median_of(results["faiss"])
    best_qps = max(flat["batch_qps_default"], flat["batch_qps_blas"])
    lines = [
        f"exact (kit): single {kit['single_ms']:.1f} ms, batch {kit['batch_qps']:.1f} q/s, "
        f"peak RssAnon {kit['anon_mib']:.0f} MiB, RssFile {kit['file_mib']:.0f} MiB",
        f"faiss IndexFlatIP: single {flat['single_ms']:.1f} ms, batch {flat['batch_qps_default']:.1f} q/s "
        f"(default), {flat['batch_qps_blas']:.1f} q/s (BLAS from 20 queries), peak RssAnon "
        f"{flat['anon_mib']:.0f} MiB; same top-10 rows as the kit: {flat['same_rows_as_kit']:.4f}",
        f"kit / faiss: single {kit['single_ms'] / flat['single_ms']:.2f}x the time, batch "
        f"{best_qps / kit['batch_qps']:.2f}x the time of faiss's best",
    ]
    for kind in kinds:
        build, index = results[f"build-{kind}"], results[f"index-{kind}"]
        lines.append(
            f"{kind}: build {build['seconds']:.0f} s, peak RssAnon {build['anon_mib']:.0f} MiB, "
            f"{build['size_mib']:.0f} MiB on disk, {build['record']}; search: single {index['single_ms']:.2f} ms "
            f"({kit['single_ms'] / index['single_ms']:.0f}x exact), batch {index['batch_qps']:.0f} q/s "
            f"({index['batch_qps'] / kit['batch_qps']:.1f}x exact), recall@10 {index['recall_at_10']:.4f}, "
            f"peak RssAnon {index['anon_mib']:.0f} MiB"
        )
    compact, binary = results["compact"], results["binary"]
    for kind in ("int8", "binary"):
        c = compact[kind]
        lines.append(
            f"{kind} copy: written in {c['seconds']:.0f} s, {c['size_mib']:.0f} MiB, recall {c['recall']}"
        )
    lines.append(
        f"binary + int8 search: single {binary['single_ms']:.1f} ms, batch {binary['batch_qps']:.1f} q/s, "
        f"recall@10 {binary['recall_at_10']:.4f}, peak RssAnon {binary['anon_mib']:.0f} MiB, "
        f"RssFile {binary['file_mib']:.0f} MiB"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default="hnsw,ivf-pq")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/embedkit-bench"))
    parser.add_argument("--quick", action="store_true", help="100,000 rows, one round")
    args = parser.parse_args()
    rows, rounds = (100_000, 1) if args.quick else (args.rows, args.rounds)
    kinds = [k for k in args.kinds.split(",") if k]
    print(f"{rows:,} x {args.dim}, {os.cpu_count()} CPUs", flush=True)
    folder = prepare(args.workdir, rows, args.dim)
    results = run(folder, rounds, kinds)
    (folder / "results.json").write_text(json.dumps(results, indent=1))
    print("\n".join(summary(results, kinds)))


if __name__ == "__main__":
    main()
