"""Encoder throughput and MFU on any device, with the same run's sentence-transformers baselines.

    python bench/gpu_throughput.py --device cuda                      # all shapes, vital + wiki texts
    python bench/gpu_throughput.py --device cuda --shapes qwen3-0.6b --texts fixed512 --attention sdpa flash
    python bench/gpu_throughput.py --device cpu --shapes tiny --texts vital --rows 64   # smoke test, < 60 s

Models are randomly initialised from configs in the shapes of all-MiniLM-L6-v2, BERT-base,
bge-large (BERT-large) and Qwen3-Embedding-0.6B (plus ``tiny`` for smoke tests), with the
all-MiniLM-L6-v2 tokenizer the kit ships; nothing is downloaded. They are saved as
sentence-transformers folders and loaded the way a task loads a model (``embedder.model``).
Texts: ``vital`` (the Vital Articles leads, real), ``wiki`` (synthetic full-article lengths:
log-normal, mean about 700 tokens, heavy tail, words drawn from the Vital Articles) and
``fixed512`` (every text at least 512 tokens).

For each shape it prints docs/s, tokens/s (text tokens, after truncation), padding % (of the
tokens computed), FLOP per token (2 x non-embedding parameters, plus attention 4 x layers x
context x attention width) and MFU against the device's dense bf16 peak, for: plain
``encode(texts)`` (defaults: float32, batch 32), ``encode(texts, batch_size=B)`` in bf16 with the
best B of a sweep, and the kit's encoder (``embedder.encode.TextEncoder``) with each attention
back-end and token budget asked for. ``parity`` is the lowest per-row cosine to plain encode.
Also times a task's fixed costs: imports (a fresh interpreter), model load, first batch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np

from bench.gpu_shapes import (  # shapes (qwen3-0.6b: head_dim 128) and device peaks
    SHAPES,
    peak_tflops,
)

WIKI_TOKENS = (6.3, 0.75)  # log-normal mu, sigma of tokens per article: median ~545, mean ~720


@dataclass
class Row:
    shape: str
    texts: str
    method: str
    docs_per_s: float
    tokens_per_s: float
    padding_pct: float
    flop_per_token: float
    mfu_pct: float | None
    parity: float | None
    shuffled: float | None = None  # the best cosine of a row to ANOTHER text's reference: parity must beat it


def build_model(shape: str, folder: Path) -> None:
    """Save a randomly initialised SentenceTransformer of ``shape`` with the shipped tokenizer."""
    from bench.gpu_shapes import build
    from jobs.demo import demo_model_path

    build(shape, folder, demo_model_path())


def load(folder: Path, device: str, dtype: str, attention: str | None = None):
    """The model as a kit task loads it."""
    from embedder import model as model_lib
    from embedder.config import EmbedIdentity

    identity = EmbedIdentity(model=str(folder))
    return model_lib.load_model(
        model_lib.ResolvedModel(folder, str(folder), "local"), identity, device, dtype, attention
    )


def make_texts(kind: str, rows: int, seed: int = 0) -> list[str]:
    from jobs.demo import vital_articles

    leads = [r["text"] for r in vital_articles(max(rows, 200) if kind == "vital" else 2000)]
    if kind == "vital":
        return (leads * (rows // len(leads) + 1))[:rows]
    words = " ".join(leads).split()
    rng = np.random.default_rng(seed)
    if kind == "fixed512":
        tokens = np.full(rows, 560)
    else:
        tokens = np.minimum(rng.lognormal(*WIKI_TOKENS, size=rows), 20000).astype(int) + 8
    starts = rng.integers(0, len(words) - 16000, size=rows)
    return [" ".join(words[s : s + int(n / 1.3) + 1]) for s, n in zip(starts, tokens, strict=True)]


def flop_per_token(model, lengths: np.ndarray) -> float:
    """2 x non-embedding parameters (not the BERT pooler: once per row), plus attention (QK^T and AV:
    4 x layers x context x width, halved for causal models)."""
    backbone = model[0].model
    params = sum(
        p.numel() for name, p in backbone.named_parameters() if "embed" not in name and "pooler" not in name
    )
    config = backbone.config
    width = config.num_attention_heads * getattr(
        config, "head_dim", config.hidden_size // config.num_attention_heads
    )
    context = float((lengths.astype(np.float64) ** 2).sum() / max(lengths.sum(), 1))  # mean context per token
    causal = 0.5 if getattr(config, "is_decoder", False) or config.model_type.startswith("qwen") else 1.0
    return 2.0 * params + 4.0 * config.num_hidden_layers * context * width * causal


def device_peak(device: str, override_tflops: float | None) -> float | None:
    """Dense bf16 peak, FLOP/s: H100/H200 NVL, L40 and MIG slices by bench/gpu_shapes.peak_tflops."""
    if override_tflops:
        return override_tflops * 1e12
    peak = peak_tflops() if device.startswith("cuda") else None
    return peak * 1e12 if peak else None


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def cosine_max(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).max())


def fixed_costs(folder: Path, device: str, dtype: str, texts: list[str], budget: int) -> dict[str, float]:
    """Seconds a task pays before its steady state: imports, model load, first batch."""
    from embedder.encode import TextEncoder

    code = "import torch, sentence_transformers, transformers, h5py"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    imports = time.perf_counter() - t0
    load_s, model = timed(lambda: load(folder, device, dtype), device)
    encoder = TextEncoder(model, prompt="", normalize=False, max_tokens=budget)
    first_s, _ = timed(lambda: encoder.encode(texts[:64]), device)
    return {"imports_s": imports, "model_load_s": load_s, "first_batch_s": first_s}


class Measure:
    """Rows of one shape and text set, all against the same plain-encode reference."""

    def __init__(self, shape: str, kind: str, texts: list[str], device: str, peak: float | None):
        self.shape, self.kind, self.texts, self.device, self.peak = shape, kind, texts, device, peak
        self.reference: np.ndarray | None = None
        self.rows: list[Row] = []

    def add(self, method: str, seconds: float, emb: np.ndarray, model, computed_tokens: int | None) -> Row:
        from embedder.feeder import token_lengths

        max_len = int(model.max_seq_length)
        lengths = np.minimum(token_lengths(model.tokenizer, self.texts, "", max_len), max_len)
        if computed_tokens is None:  # sentence-transformers: char-sorted fixed batches, padded
            computed_tokens = padded_plain(self.texts, lengths, int(method.split("B=")[-1].split()[0]))
        fpt = flop_per_token(model, lengths)
        tokens_per_s = lengths.sum() / seconds
        mfu = 100 * tokens_per_s * fpt / self.peak if self.peak else None
        parity = cosine_min(emb, self.reference) if self.reference is not None else None
        shuffled = cosine_max(emb, np.roll(self.reference, 1, axis=0)) if self.reference is not None else None
        row = Row(
            self.shape,
            self.kind,
            method,
            len(self.texts) / seconds,
            float(tokens_per_s),
            100 * (1 - lengths.sum() / computed_tokens),
            fpt,
            mfu,
            parity,
            shuffled,
        )
        self.rows.append(row)
        print(format_row(row), flush=True)
        return row


def padded_plain(texts: list[str], lengths: np.ndarray, batch_size: int) -> int:
    order = np.argsort([-len(t) for t in texts], kind="stable")
    return int(
        sum(
            len(b) * lengths[b].max()
            for b in np.array_split(order, range(batch_size, len(order), batch_size))
        )
    )


def format_row(r: Row) -> str:
    mfu = f"{r.mfu_pct:5.1f}" if r.mfu_pct is not None else "  n/a"
    parity = f"{r.parity:.5f} (other text {r.shuffled:.3f})" if r.parity is not None else "    ref"
    return (
        f"{r.shape:>11} {r.texts:>8} {r.method:<34} {r.docs_per_s:9.1f} {r.tokens_per_s:11.0f} "
        f"{r.padding_pct:6.1f} {r.flop_per_token / 1e6:9.1f} {mfu} {parity}"
    )


def plain_runs(m: Measure, folder: Path, batch_sizes: list[int], sweep_rows: int) -> None:
    """``encode(texts)`` with its defaults, then bf16 with the best batch size of a sweep."""
    model = load(folder, m.device, "float32")
    model.encode(m.texts[:32])
    seconds, reference = timed(lambda: model.encode(m.texts, convert_to_numpy=True), m.device)
    m.reference = reference
    m.add("st encode float32 B=32", seconds, reference, model, None)
    bf16 = load(folder, m.device, "bfloat16")
    bf16.encode(m.texts[:32])
    subset = m.texts[:sweep_rows]
    speed = {
        b: len(subset) / timed(partial(bf16.encode, subset, batch_size=b), m.device)[0] for b in batch_sizes
    }
    best = max(speed, key=lambda b: speed[b])
    seconds, emb = timed(lambda: bf16.encode(m.texts, batch_size=best, convert_to_numpy=True), m.device)
    m.add(f"st encode bf16 B={best} (best of {len(batch_sizes)})", seconds, emb, bf16, None)


def kit_runs(
    m: Measure, folder: Path, dtype: str, attentions: list[str | None], budgets: list[int], pin_memory: bool
) -> None:
    from embedder.encode import TextEncoder

    for attention in attentions:
        model = load(folder, m.device, dtype, attention)
        for budget in budgets:
            encoder = TextEncoder(model, prompt="", normalize=False, max_tokens=budget, pin_memory=pin_memory)
            encoder.encode(m.texts[:64])
            before = encoder.counters.computed_tokens
            seconds, emb = timed(partial(shard_loop, encoder, m.texts), m.device)
            from embedder.model import attention_description

            name = f"kit {dtype} {attention_description(model)} {budget // 1024}k{' pinned' if pin_memory else ''}"
            m.add(name, seconds, emb, model, encoder.counters.computed_tokens - before)
        del model


def shard_loop(encoder, texts: list[str], flush_rows: int = 2048) -> np.ndarray:
    """The kit as a task runs it: chunks of ``flush_rows``, each written to a shard by the writer thread."""
    from embedder.prefetch import BackgroundWriter
    from embedder.shard import ShardWriter
    from kit.shardfile import ShardIdentity, ShardSpec

    chunks = [
        (s, texts[s : s + flush_rows], [str(i) for i in range(s, min(s + flush_rows, len(texts)))])
        for s in range(0, len(texts), flush_rows)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        writer = ShardWriter(
            Path(tmp) / "shard-00000.h5",
            ShardSpec(0, 0, len(texts)),
            ShardIdentity(model="gpu_throughput", dim=encoder.dim),
            {},
        )
        with BackgroundWriter(writer.append) as background:
            for _, ids, emb in encoder.encode_chunks(chunks):
                background.put(emb, ids)
        out = writer.h5["embeddings"][:]
        writer.close()
    return out


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=["minilm", "bert-base", "bge-large", "qwen3-0.6b"],
        choices=list(SHAPES),
    )
    parser.add_argument(
        "--texts", nargs="+", default=["vital", "wiki"], choices=["vital", "wiki", "fixed512"]
    )
    parser.add_argument("--rows", type=int, default=None, help="texts per set (default 20000 cuda, 300 cpu)")
    parser.add_argument("--dtype", default=None, help="the kit's compute dtype (default: the device's)")
    parser.add_argument("--attention", nargs="+", default=["default"], help="sdpa eager flash, or default")
    parser.add_argument("--max-tokens", nargs="+", type=int, default=None, help="kit token budgets to try")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=None, help="bf16 encode sweep")
    parser.add_argument("--pin-memory", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak, if not detected")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--skip-fixed-costs", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> list[Row]:
    args = parse_args(argv)
    from embedder.config import DEFAULT_COMPUTE_DTYPE, DEFAULT_TOKENS_PER_BATCH

    kind = args.device.split(":")[0]
    cuda = kind == "cuda"
    rows = args.rows or (20000 if cuda else 300)
    dtype = args.dtype or DEFAULT_COMPUTE_DTYPE[kind]
    budgets = args.max_tokens or [DEFAULT_TOKENS_PER_BATCH[kind]]
    batch_sizes = args.batch_sizes or ([32, 64, 128, 256, 512] if cuda else [16, 32])
    attentions = [None if a == "default" else a for a in args.attention]
    peak = device_peak(args.device, args.peak_tflops)
    print(
        f"device {args.device}, peak {peak / 1e12 if peak else 'unknown'} TFLOP/s bf16 dense, kit dtype {dtype}"
    )
    print(
        f"{'shape':>11} {'texts':>8} {'method':<34} {'docs/s':>9} {'tokens/s':>11} {'pad%':>6} "
        f"{'MFLOP/tok':>9} {'MFU%':>5} parity"
    )
    results, costs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            folder = Path(tmp) / shape
            build_model(shape, folder)
            for kind_of_texts in args.texts:
                m = Measure(shape, kind_of_texts, make_texts(kind_of_texts, rows), args.device, peak)
                plain_runs(m, folder, batch_sizes, min(rows, 2048 if cuda else 64))
                kit_runs(m, folder, dtype, attentions, budgets, args.pin_memory)
                results += m.rows
            if not args.skip_fixed_costs:
                costs[shape] = fixed_costs(folder, args.device, dtype, make_texts("vital", 64), budgets[0])
                print(
                    f"{shape:>11} fixed costs: " + ", ".join(f"{k} {v:.2f}" for k, v in costs[shape].items())
                )
    if args.json:
        args.json.write_text(
            json.dumps({"rows": [asdict(r) for r in results], "fixed_costs": costs}, indent=1)
        )
    return results


if __name__ == "__main__":
    main()
