"""Embedding pipeline docs/s vs a plain ``SentenceTransformer.encode(texts)`` over the same texts.

    python bench/embed_throughput.py [--rows 1500] [--device cpu]

Both run in this process on the same Vital Articles texts with all-MiniLM-L6-v2 (model load
excluded from both). The pipeline is ``embed_shards`` end to end: read the prepared corpus
slice, count tokens, batch by token budget, encode, restore order, write and commit the shard.
Also prints padded tokens computed under each batching.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from embedder.batching import padded_tokens, token_budget_batches  # noqa: E402
from embedder.config import DEFAULT_TOKENS_PER_BATCH, EmbedConfig, ShardSpec  # noqa: E402
from embedder.corpus import CorpusOptions, prepare  # noqa: E402
from embedder.encode import token_lengths  # noqa: E402
from embedder.run import embed_shards  # noqa: E402
from jobs.demo import demo_model_path, vital_articles  # noqa: E402
from kit.format import CORPUS_FILE  # noqa: E402


def plain_batches(texts: list[str], lengths: np.ndarray, batch_size: int = 32) -> list[np.ndarray]:
    """sentence-transformers' own batching: sort by character length, fixed batch size."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    records = list(vital_articles(args.rows))
    texts = [r["text"] for r in records]
    model = SentenceTransformer(str(demo_model_path()), device=args.device)
    model.encode(texts[:64])  # warm-up
    config = EmbedConfig(model=str(demo_model_path()), device=args.device)
    lengths = np.minimum(token_lengths(model.tokenizer, texts, "", model.max_seq_length), model.max_seq_length)
    budget = DEFAULT_TOKENS_PER_BATCH[args.device]
    print(f"{len(texts)} Vital Articles, {int(lengths.mean())} tokens on average, device {args.device}")
    print(f"  padded tokens: plain (char-sorted, 32/batch) {padded_tokens(lengths, plain_batches(texts, lengths)):,}"
          f"  vs token budget {budget}: {padded_tokens(lengths, token_budget_batches(lengths, budget)):,}")
    for repeat in range(args.repeats):
        t0 = time.perf_counter()
        model.encode(texts, show_progress_bar=False)
        plain = len(texts) / (time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as tmp:
            prepare(iter(records), Path(tmp) / CORPUS_FILE, CorpusOptions(), "bench")
            result = embed_shards([ShardSpec(0, 0, len(texts))], tmp, config)[0]
        ours = len(texts) / result.seconds
        print(f"  run {repeat + 1}: plain encode {plain:.1f} docs/s, pipeline {ours:.1f} docs/s, "
              f"ratio {ours / plain:.2f}x (target >= 1.0x)")


if __name__ == "__main__":
    main()
