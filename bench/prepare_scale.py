"""Prepare at scale: wall time, peak RSS and bytes written of ``prepare_source`` vs plain reads of the file.

    python bench/prepare_scale.py --rows 1000000 --texts wiki  [--dir /tmp/prepare-bench] [--keep]
    python bench/prepare_scale.py --rows 10000000 --texts short

Writes a synthetic corpus (ids, titles, urls, texts) as parquet and as JSONL under --dir:
``wiki``: Wikipedia-like text lengths (log-normal, median ~2,000 characters, mean ~3,300, long
tail to 100,000); ``short``: about 200 characters. Then, each in a fresh child process (so its
peak RSS is its own): the plain reads (pyarrow ``iter_batches`` of the columns prepare needs,
as Arrow and with ``to_pylist``; for JSONL ``json.loads`` and ``orjson.loads`` of every line)
and ``prepare_source`` into a fresh run folder, whose bytes are counted (the index, and for JSONL
the run's own parquet). Last, a task's read (parquet source): the rows of 1 of 16 shards
through ``kit.corpusfile.read_chunks`` against pyarrow reading exactly those rows, with the
bytes each read from disk (``rchar`` of /proc/self/io). Prints Markdown rows. The files are
deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHUNK_ROWS = 100_000
WORDS = [
    "the",
    "of",
    "and",
    "in",
    "a",
    "to",
    "was",
    "is",
    "for",
    "on",
    "as",
    "by",
    "with",
    "he",
    "that",
    "at",
    "from",
    "his",
    "it",
    "an",
    "were",
    "are",
    "which",
    "this",
    "also",
    "be",
    "or",
    "has",
    "had",
    "first",
    "river",
    "century",
    "government",
    "population",
    "university",
    "national",
    "война",
    "série",
    "東京",
]


def _lengths(rng: np.random.Generator, n: int, texts: str) -> np.ndarray:
    if texts == "short":
        return rng.integers(150, 250, n)
    return np.clip(rng.lognormal(np.log(2000), 1.0, n), 50, 100_000).astype(np.int64)


def _chunks(rows: int, texts: str):
    """Chunks of synthetic rows as column lists: slices of a long pool of words at random offsets."""
    rng = np.random.default_rng(0)
    pool = " ".join(rng.choice(WORDS, 1_200_000).tolist())
    for lo in range(0, rows, CHUNK_ROWS):
        n = min(CHUNK_ROWS, rows - lo)
        lengths = _lengths(rng, n, texts)
        starts = rng.integers(0, len(pool) - 100_001, n)
        ids = [f"Q{lo + i}" for i in range(n)]
        yield {
            "id": ids,
            "url": [f"https://en.wikipedia.org/wiki/{i}" for i in ids],
            "title": [f"Article {lo + i}" for i in range(n)],
            "text": [pool[s : s + k] for s, k in zip(starts.tolist(), lengths.tolist())],
        }


def write_corpus(folder: Path, rows: int, texts: str) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet, jsonl = folder / f"corpus-{rows}-{texts}.parquet", folder / f"corpus-{rows}-{texts}.jsonl"
    if parquet.exists() and jsonl.exists():
        return parquet, jsonl
    row_group = 10_000 if texts == "wiki" else CHUNK_ROWS
    with (
        pq.ParquetWriter(
            parquet, pa.schema([(c, pa.string()) for c in ("id", "url", "title", "text")])
        ) as pw,
        open(jsonl, "w", encoding="utf-8") as jw,
    ):
        for chunk in _chunks(rows, texts):
            pw.write_table(pa.table(chunk), row_group_size=row_group)
            names = list(chunk)
            jw.writelines(
                json.dumps(dict(zip(names, values)), ensure_ascii=False) + "\n"
                for values in zip(*chunk.values())
            )
    return parquet, jsonl


COLUMNS = '["id", "url", "title", "text"]'
CHILD = {
    "read-parquet-arrow": f"""
import pyarrow.parquet as pq
pf = pq.ParquetFile(SOURCE)
for b in pf.iter_batches(batch_size=8192, columns={COLUMNS}):
    pass
""",
    "read-parquet": f"""
import pyarrow.parquet as pq
pf = pq.ParquetFile(SOURCE)
for b in pf.iter_batches(batch_size=8192, columns={COLUMNS}):
    cols = [b.column(i).to_pylist() for i in range(b.num_columns)]
""",
    "read-jsonl": """
import json
with open(SOURCE, encoding="utf-8") as f:
    for line in f:
        json.loads(line)
""",
    "read-jsonl-orjson": """
import orjson
with open(SOURCE, "rb") as f:
    for line in f:
        orjson.loads(line)
""",
    "prepare": """
from embedder.corpus import CorpusOptions, prepare_source
prepare_source(Path(SOURCE), Path(OUT), CorpusOptions())
""",
    # A task's read: shard 7 of 16, through the corpus layer, in chunks of 4096 rows (embedder.run).
    "task-read": """
from kit.corpusfile import corpus_info, read_chunks
n = corpus_info(Path(OUT)).rows
for _ in read_chunks(Path(OUT), 7 * n // 16, 8 * n // 16, 4096):
    pass
""",
    # pyarrow reading exactly those rows (the row groups that hold them, the id and text columns the task
    # needs, as Python strings).
    "task-read-arrow": """
import numpy as np, pyarrow.parquet as pq
pf = pq.ParquetFile(SOURCE)
n = pf.metadata.num_rows
start, stop = 7 * n // 16, 8 * n // 16
bounds = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
groups = [g for g in range(pf.num_row_groups) if bounds[g] < stop and bounds[g + 1] > start]
table = pf.read_row_groups(groups, columns=["id", "text"]).slice(start - bounds[groups[0]], stop - start)
texts, ids = table.column("text").to_pylist(), table.column("id").to_pylist()
""",
}


def run_child(kind: str, source: Path, out: Path) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in MiB, bytes read) of one measurement in a fresh process.

    The child's imports run before the clock starts (importing h5py or pyarrow is not reading).

    CPU time (user + system of the child) is reported beside wall time: on a shared machine it is
    the steadier of the two.
    """
    imports = "".join(
        line + "\n" for line in CHILD[kind].splitlines() if line.startswith(("import ", "from "))
    )
    work = "".join(
        line + "\n" for line in CHILD[kind].splitlines() if not line.startswith(("import ", "from "))
    )
    code = (
        f"import sys, time\nfrom pathlib import Path\nSOURCE, OUT = {str(source)!r}, {str(out)!r}\n"
        "def rchar():\n    return int([l for l in open('/proc/self/io') if l.startswith('rchar')][0].split()[1])\n"
        f"{imports}r0, t, c = rchar(), time.perf_counter(), time.process_time()\n{work}\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(time.perf_counter() - t, time.process_time() - c, int(hwm) / 1024, rchar() - r0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the (large) parent.
    seconds, cpu, rss, rchar = proc.stdout.split()[-4:]
    return float(seconds), float(cpu), float(rss), int(rchar)


def _t(m: tuple) -> str:
    """Wall seconds (CPU seconds): on a shared machine CPU time is the steadier."""
    return f"{m[0]:.1f} ({m[1]:.1f} CPU)"


def _ratio(a: tuple, b: tuple) -> str:
    return f"{a[0] / b[0]:.2f} (CPU {a[1] / b[1]:.2f})"


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--texts", choices=("wiki", "short"), default="wiki")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/prepare-bench"))
    parser.add_argument("--keep", action="store_true", help="keep the corpus files")
    parser.add_argument(
        "--formats", default="parquet,jsonl", help="which of parquet,jsonl to measure (quick runs)"
    )
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    parquet, jsonl = write_corpus(args.dir, args.rows, args.texts)
    print(
        f"wrote {parquet.stat().st_size / 2**20:.0f} MiB parquet, {jsonl.stat().st_size / 2**20:.0f} MiB JSONL "
        f"in {time.perf_counter() - t:.0f} s",
        file=sys.stderr,
    )
    print(
        "| corpus | format | fast read s (what) | Python read s | prepare s | prepare / fast read | "
        "prepare / Python read | prepare peak RSS MiB | written by prepare MiB (% of source) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    runs = {"parquet": ("read-parquet-arrow", "Arrow"), "jsonl": ("read-jsonl-orjson", "orjson")}
    try:
        for fmt, path in (("parquet", parquet), ("jsonl", jsonl)):
            if fmt not in args.formats.split(","):
                continue
            run_dir = args.dir / f"run-{fmt}"
            shutil.rmtree(run_dir, ignore_errors=True)
            out = run_dir / "corpus.h5"
            fast = run_child(runs[fmt][0], path, out)
            read = run_child(f"read-{fmt}", path, out)
            prep = run_child("prepare", path, out)
            written = folder_bytes(run_dir)
            print(
                f"| {args.rows:,} {args.texts} | {fmt} | {_t(fast)} ({runs[fmt][1]}) | {_t(read)} | {_t(prep)} | "
                f"{_ratio(prep, fast)} | {_ratio(prep, read)} | {prep[2]:.0f} | "
                f"{written / 2**20:.1f} ({100 * written / path.stat().st_size:.2f} %) |",
                flush=True,
            )
            if fmt == "parquet":
                task, arrow = run_child("task-read", path, out), run_child("task-read-arrow", path, out)
                print(
                    f"\ntask read of 1/16 (parquet, file {path.stat().st_size / 2**20:.0f} MiB): {_t(task)} s, "
                    f"{task[3] / 2**20:.0f} MiB read; pyarrow reading exactly those rows {_t(arrow)} s, "
                    f"{arrow[3] / 2**20:.0f} MiB; ratio {_ratio(task, arrow)}\n",
                    flush=True,
                )
            shutil.rmtree(run_dir)
    finally:
        if not args.keep:
            parquet.unlink(missing_ok=True)
            jsonl.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
