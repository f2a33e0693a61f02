"""Cost-balanced shards vs equal-rows shards: slowest / mean shard embed time on the Vital Articles.

    HF_HUB_OFFLINE=1 python bench/plan_balance.py [--rows all|2000] [--shards 8] [--repeats 2] [--threads 1]

Prepares the Vital Articles (in the topics' order, as ``make demo`` does) into a temporary
corpus.h5, plans ``--shards`` shards twice (``plan_shards(rows)``: equal rows;
``plan_shards(row_costs(...))``: equal estimated tokens) and embeds every shard of both plans
with the kit's encoder (all-MiniLM-L6-v2 on CPU), shard after shard in this one process.

Made to be read on a shared machine: torch runs on ``--threads`` threads (1: all the work is on
the calling thread), each shard is timed by that thread's CPU time (``time.thread_time``, which
other processes do not inflate) as well as by the wall clock, the plans are interleaved, and each
shard's figure is the minimum over ``--repeats`` passes. Also prints the cost model's calibration
on these texts: characters per token (the model's tokenizer) and the per-row overhead in tokens
(least squares of the shards' CPU times against their rows and tokens).
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
from kit.corpusfile import CHARS_PER_TOKEN, ROW_OVERHEAD_TOKENS, read_slice, row_costs


def shard_times(encoder: TextEncoder, texts: list[str]) -> tuple[float, float]:
    """(thread CPU seconds, wall seconds) to embed ``texts``."""
    c, t = time.thread_time(), time.perf_counter()
    encoder.encode(texts)
    return time.thread_time() - c, time.perf_counter() - t


def measure(encoder: TextEncoder, texts: list[str], plans: dict, repeats: int) -> dict[str, np.ndarray]:
    """Per plan: [shards, 2] (CPU s, wall s), each the minimum over ``repeats`` interleaved passes."""
    best = {name: np.full((len(plan), 2), np.inf) for name, plan in plans.items()}
    for r in range(repeats):
        for i in range(max(map(len, plans.values()))):  # shard i of each plan, one after the other
            for name, plan in plans.items():
                spec = plan[i]
                best[name][i] = np.minimum(best[name][i], shard_times(encoder, texts[spec.start : spec.stop]))
        print(f"pass {r + 1}/{repeats} done", flush=True)
    return best


def calibrate(model, texts: list[str], plans: dict, best: dict) -> tuple[float, float]:
    """(characters per token of the texts the model does not cut, per-row overhead in tokens)."""
    cap = int(model.max_seq_length)
    tokens = np.array([len(ids) for ids in model.tokenizer(texts, add_special_tokens=True)["input_ids"]])
    chars = np.array([len(t) for t in texts])
    whole = tokens <= cap
    chars_per_token = chars[whole].sum() / max(tokens[whole].sum(), 1)
    prefix = np.concatenate(([0], np.cumsum(np.minimum(tokens, cap))))
    rows, toks, cpu = [], [], []
    for name, plan in plans.items():
        for spec, (c, _) in zip(plan, best[name]):
            rows.append(spec.rows)
            toks.append(prefix[spec.stop] - prefix[spec.start])
            cpu.append(c)
    (per_row, per_token), *_ = np.linalg.lstsq(
        np.array([rows, toks], dtype=float).T, np.array(cpu), rcond=None
    )
    return float(chars_per_token), float(per_row / per_token)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default="all", help="articles, spread over the topics, or 'all' (10,033)")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: CPU time measures the work)"
    )
    parser.add_argument("--max-tokens-per-batch", type=int, default=16384)
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    model = SentenceTransformer(str(demo_model_path()), device="cpu", local_files_only=True)
    encoder = TextEncoder(model, prompt="", normalize=False, max_tokens=args.max_tokens_per_batch)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.h5"
        limit = None if args.rows == "all" else int(args.rows)
        prepare(vital_articles(limit), corpus, CorpusOptions(skip_bad_rows=True), "vital articles")
        costs = row_costs(corpus, int(model.max_seq_length or 512))  # the demo model sets 256
        texts = read_slice(corpus, 0, len(costs), ("texts",))["texts"]
    plans = {
        "equal rows": plan_shards(len(costs), args.shards),
        "equal cost": plan_shards(costs, args.shards),
    }
    encoder.encode(texts[:64])  # warm up
    best = measure(encoder, texts, plans, args.repeats)
    print(
        f"{len(costs)} Vital Articles, {args.shards} shards, all-MiniLM-L6-v2 on CPU (max_seq_length "
        f"{model.max_seq_length}), torch threads {torch.get_num_threads()}, min of {args.repeats} passes; "
        f"cost model: {CHARS_PER_TOKEN} chars/token, {ROW_OVERHEAD_TOKENS} tokens/row"
    )
    print(
        "| plan | shard rows | estimated cost share | shard embed CPU s | slowest / mean (CPU) | "
        "slowest / mean (wall) |"
    )
    print("|---|---|---|---|---|---|")
    for name, plan in plans.items():
        share = [costs[s.start : s.stop].sum() / costs.sum() * len(plan) for s in plan]
        cpu, wall = best[name][:, 0], best[name][:, 1]
        print(
            f"| {name} | {' '.join(str(s.rows) for s in plan)} | {' '.join(f'{x:.2f}' for x in share)} | "
            f"{' '.join(f'{x:.1f}' for x in cpu)} | {cpu.max() / cpu.mean():.3f} | {wall.max() / wall.mean():.3f} |"
        )
    chars_per_token, overhead = calibrate(model, texts, plans, best)
    print(
        f"calibration on these texts: {chars_per_token:.2f} chars/token (untruncated texts), "
        f"per-row overhead {overhead:.1f} tokens (least squares over the {2 * args.shards} shards)"
    )


if __name__ == "__main__":
    main()
