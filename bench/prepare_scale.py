"""Prepare at scale: wall time and peak RSS of ``prepare_source`` vs a plain read of the same file.

    python bench/prepare_scale.py --rows 1000000 --texts wiki  [--dir /tmp/prepare-bench] [--keep]
    python bench/prepare_scale.py --rows 10000000 --texts short

Writes a synthetic corpus (ids, titles, urls, texts) as parquet and as JSONL under --dir:
``wiki``: Wikipedia-like text lengths (log-normal, median ~2,000 characters, mean ~3,300, long
tail to 100,000); ``short``: about 200 characters. Then, each in a fresh child process (so its
ru_maxrss is its own): the plain read (pyarrow ``iter_batches`` of the four columns with
``to_pylist``; ``json.loads`` of every line) and ``prepare_source`` to a corpus.h5. Prints one
Markdown row per format. The files are deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHUNK_ROWS = 100_000
WORDS = ["the", "of", "and", "in", "a", "to", "was", "is", "for", "on", "as", "by", "with", "he", "that", "at",
         "from", "his", "it", "an", "were", "are", "which", "this", "also", "be", "or", "has", "had", "first",
         "river", "century", "government", "population", "university", "national", "война", "série", "東京"]


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
        yield {"id": ids, "url": [f"https://en.wikipedia.org/wiki/{i}" for i in ids],
               "title": [f"Article {lo + i}" for i in range(n)],
               "text": [pool[s : s + k] for s, k in zip(starts.tolist(), lengths.tolist())]}


def write_corpus(folder: Path, rows: int, texts: str) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet, jsonl = folder / f"corpus-{rows}-{texts}.parquet", folder / f"corpus-{rows}-{texts}.jsonl"
    if parquet.exists() and jsonl.exists():
        return parquet, jsonl
    row_group = 10_000 if texts == "wiki" else CHUNK_ROWS
    with pq.ParquetWriter(parquet, pa.schema([(c, pa.string()) for c in ("id", "url", "title", "text")])) as pw, \
            open(jsonl, "w", encoding="utf-8") as jw:
        for chunk in _chunks(rows, texts):
            pw.write_table(pa.table(chunk), row_group_size=row_group)
            names = list(chunk)
            jw.writelines(json.dumps(dict(zip(names, values)), ensure_ascii=False) + "\n"
                          for values in zip(*chunk.values()))
    return parquet, jsonl


CHILD = {
    "read-parquet": """
import pyarrow.parquet as pq
pf = pq.ParquetFile(SOURCE)
for b in pf.iter_batches(batch_size=8192, columns=["id", "url", "title", "text"]):
    cols = [b.column(i).to_pylist() for i in range(b.num_columns)]
""",
    "read-jsonl": """
import json
with open(SOURCE, encoding="utf-8") as f:
    for line in f:
        json.loads(line)
""",
    "prepare": """
from embedder.corpus import CorpusOptions, prepare_source
prepare_source(Path(SOURCE), Path(OUT), CorpusOptions())
""",
}


def run_child(kind: str, source: Path, out: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MiB) of one measurement in a fresh process.

    CPU time (user + system of the child) is reported beside wall time: on a shared machine it is
    the steadier of the two.
    """
    code = (f"import sys, time\nfrom pathlib import Path\nSOURCE, OUT = {str(source)!r}, {str(out)!r}\n"
            f"t, c = time.perf_counter(), time.process_time()\n{CHILD[kind]}\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print(time.perf_counter() - t, time.process_time() - c, int(hwm) / 1024)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the (large) parent.
    seconds, cpu, rss = proc.stdout.split()[-3:]
    return float(seconds), float(cpu), float(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--texts", choices=("wiki", "short"), default="wiki")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/prepare-bench"))
    parser.add_argument("--keep", action="store_true", help="keep the corpus files")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    parquet, jsonl = write_corpus(args.dir, args.rows, args.texts)
    print(f"wrote {parquet.stat().st_size / 2**20:.0f} MiB parquet, {jsonl.stat().st_size / 2**20:.0f} MiB JSONL "
          f"in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    print("| corpus | format | plain read s | prepare s | ratio | CPU s read / prepare (ratio) | "
          "prepare peak RSS MiB | plain read RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for fmt, path in (("parquet", parquet), ("jsonl", jsonl)):
            out = args.dir / f"corpus-{fmt}.h5"
            read_s, read_cpu, read_rss = run_child(f"read-{fmt}", path, out)
            prep_s, prep_cpu, prep_rss = run_child("prepare", path, out)
            out.unlink()
            print(f"| {args.rows:,} {args.texts} | {fmt} | {read_s:.1f} | {prep_s:.1f} | {prep_s / read_s:.2f} | "
                  f"{read_cpu:.1f} / {prep_cpu:.1f} ({prep_cpu / read_cpu:.2f}) | {prep_rss:.0f} | {read_rss:.0f} |",
                  flush=True)
    finally:
        if not args.keep:
            parquet.unlink(missing_ok=True)
            jsonl.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
