"""Embedding pipeline docs/s vs a plain ``SentenceTransformer.encode(texts)`` over the same texts.

    python bench/embed_throughput.py [--rows 1500] [--device cpu] [--repeats 5]

Both run in this process on the same Vital Articles texts with all-MiniLM-L6-v2 (model load
excluded from both), alternating, so a machine shared with other work slows both alike. The
pipeline is ``embed_shards`` end to end: read the prepared corpus slice, tokenise once, batch by
token budget, encode, restore order, write and commit the shard. Prints each pair's ratio and
the median and spread of the ratios, and the tokens computed under each batching.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np

from embedder.batching import padded_tokens, token_budget_batches
from embedder.config import DEFAULT_TOKENS_PER_BATCH, ComputeSettings, EmbedIdentity
from embedder.corpus import CorpusOptions, prepare
from embedder.feeder import token_lengths
from embedder.run import embed_shards
from jobs.demo import demo_model_path, vital_articles
from kit.format import CORPUS_FILE
from kit.shardfile import ShardSpec


def plain_batches(texts: list[str], batch_size: int = 32) -> list[np.ndarray]:
    """sentence-transformers' own batching: sort by character length, fixed batch size."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pipeline_docs_per_s(records: list[dict], compute: ComputeSettings) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        prepare(iter(records), Path(tmp) / CORPUS_FILE, CorpusOptions(), "bench")
        result = embed_shards(
            [ShardSpec(0, 0, len(records))], Path(tmp), EmbedIdentity(model=str(demo_model_path())), compute
        )[0]
    return len(records) / result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=None, help="token budget (default: the device's)")
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    records = list(vital_articles(args.rows))
    texts = [r["text"] for r in records]
    model = SentenceTransformer(str(demo_model_path()), device=args.device)
    model.encode(texts[:64])  # warm-up
    compute = ComputeSettings(device=args.device, max_tokens_per_batch=args.max_tokens)
    max_len = int(model.max_seq_length or 512)  # the demo model sets 256; 512 only if a model leaves it unset
    lengths = np.minimum(token_lengths(model.tokenizer, texts, "", max_len), max_len)
    budget = args.max_tokens or DEFAULT_TOKENS_PER_BATCH[args.device]
    print(
        f"{len(texts)} Vital Articles, {int(lengths.mean())} tokens on average, device {args.device}, "
        f"torch threads {__import__('torch').get_num_threads()}"
    )
    print(
        f"  tokens computed: plain (char-sorted, 32/batch) {padded_tokens(lengths, plain_batches(texts)):,}"
        f"  vs token budget {budget}: {padded_tokens(lengths, token_budget_batches(lengths, budget)):,}"
        f"  (text tokens {int(lengths.sum()):,})"
    )
    ratios = []
    for repeat in range(args.repeats):
        t0 = time.perf_counter()
        model.encode(texts, show_progress_bar=False)
        plain = len(texts) / (time.perf_counter() - t0)
        ours = pipeline_docs_per_s(records, compute)
        ratios.append(ours / plain)
        print(
            f"  run {repeat + 1}: plain encode {plain:.1f} docs/s, pipeline {ours:.1f} docs/s, "
            f"ratio {ours / plain:.2f}x"
        )
    print(
        f"  ratio median {statistics.median(ratios):.2f}x, min {min(ratios):.2f}x, max {max(ratios):.2f}x "
        f"over {len(ratios)} pairs (target >= 1.3x)"
    )


if __name__ == "__main__":
    main()
