"""Cost-balanced shards vs equal-rows shards: slowest / mean shard embed time on the Vital Articles.

    HF_HUB_OFFLINE=1 python bench/plan_balance.py [--rows 2000|all] [--shards 8] [--repeats 1]

Prepares the Vital Articles (in the topics' order, as ``make demo`` does) into a temporary
corpus.h5, plans ``--shards`` shards twice (``plan_shards(rows)``: equal rows;
``plan_shards(row_costs(...))``: equal estimated tokens) and embeds every shard of both plans
with the kit's encoder (all-MiniLM-L6-v2 on CPU), shard after shard in this one process, plans
interleaved so a change of machine load hits both alike. Prints each plan's shard times and
its slowest / mean ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from embedder.corpus import CorpusOptions, prepare
from embedder.encode import TextEncoder
from jobs.demo import demo_model_path, vital_articles
from jobs.plan import plan_shards
from kit.corpusfile import read_slice, row_costs


def shard_seconds(encoder: TextEncoder, corpus: Path, plan) -> list[float]:
    out = []
    for spec in plan:
        texts = read_slice(corpus, spec.start, spec.stop, ("texts",))["texts"]
        t = time.perf_counter()
        encoder.encode(texts)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="2000", help="articles, spread over the topics, or 'all' (10,033)")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--max-tokens-per-batch", type=int, default=16384)
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    model = SentenceTransformer(str(demo_model_path()), device="cpu", local_files_only=True)
    encoder = TextEncoder(model, prompt="", normalize=False, max_tokens=args.max_tokens_per_batch)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.h5"
        limit = None if args.rows == "all" else int(args.rows)
        prepare(vital_articles(limit), corpus, CorpusOptions(skip_bad_rows=True), "vital articles")
        costs = row_costs(corpus, int(model.max_seq_length))
        plans = {"equal rows": plan_shards(len(costs), args.shards),
                 "equal cost": plan_shards(costs, args.shards)}
        encoder.encode(read_slice(corpus, 0, 64, ("texts",))["texts"])  # warm up
        times = {name: [] for name in plans}
        for i in range(args.shards):  # interleave: shard i of each plan, one after the other
            for name, plan in plans.items():
                times[name] += shard_seconds(encoder, corpus, plan[i : i + 1])
    print(f"{len(costs)} Vital Articles, {args.shards} shards, all-MiniLM-L6-v2 on CPU "
          f"(max_seq_length {model.max_seq_length}), torch threads {torch.get_num_threads()}")
    print("| plan | shard rows | shard embed s | slowest / mean |")
    print("|---|---|---|---|")
    for name, plan in plans.items():
        t = np.array(times[name])
        print(f"| {name} | {' '.join(str(s.rows) for s in plan)} | {' '.join(f'{x:.1f}' for x in t)} | "
              f"{t.max() / t.mean():.3f} |")


if __name__ == "__main__":
    main()
