"""The host side of the embed loop, measured without a GPU.

    python bench/feed_rate.py                      # Wikipedia-length texts and Vital leads, 1 core and all
    python bench/feed_rate.py --docs 2000 --quick  # a smoke run
    python bench/feed_rate.py --quick --docs 8000 --overlap-docs 40000  # BENCHMARKS.md's runs

(a) Host capacity: docs/s and tokens/s the loop prepares (read the corpus slice, tokenise, group,
    collate, write the shard) with the all-MiniLM-L6-v2 tokenizer (max_seq_length 256) and the same
    WordPiece vocabulary at BERT-base's 512, each in a fresh process pinned to 1 core and to all
    cores (the tokenizer's threads follow the affinity mask). The Qwen3 tokenizer is not on this
    machine (no network): not measured. Beside the 1 -> N core ratio, what this machine's cores give
    to perfectly parallel work in the same run (one process per core): shared vCPUs give less than N.
(b) Overlap: the real loop (``TextEncoder.encode_chunks`` and the shard writer thread) driving a
    simulated device whose forward takes computed tokens / R seconds without holding the GIL (as a
    GPU does) and returns tensors of the right shape; R at 80 % of the host capacity just measured.
    Reports the share of wall time the device is busy, writer and commit included.
(c) Today's loop (the feeder before issue 20: tokenise up to 12 characters a token with Python
    overflow windows, per-row padded collate, writes on the compute thread) in the same run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np


def wiki_texts(n: int, chars: int = 3100) -> list[str]:
    """Texts of Wikipedia-article length: Vital Articles leads joined to ``chars`` characters."""
    from jobs.demo import vital_articles

    from bench.gpu_check import joined_texts

    return joined_texts([r["text"] for r in vital_articles()], n, chars)


def vital_texts(n: int) -> list[str]:
    from jobs.demo import vital_articles

    leads = [r["text"] for r in vital_articles()]
    return (leads * (n // len(leads) + 1))[:n]


def load_model(max_len: int):
    from sentence_transformers import SentenceTransformer

    from jobs.demo import demo_model_path

    model = SentenceTransformer(str(demo_model_path()), device="cpu", local_files_only=True)
    model.max_seq_length = max_len
    return model


class LegacyCollator:
    """The feeder as it was before issue 20 (baseline (c)): same outputs, more work per text."""

    packed = False

    def __init__(self, model, prompt: str = ""):
        from embedder.feeder import FastCollator

        self.new = FastCollator(model, prompt)
        self.tokenizer = copy.deepcopy(model[0].tokenizer)
        self.max_len, self.prompt, self.pad_id = int(model.max_seq_length), prompt, self.new.pad_id

    def tokenize(self, texts):
        from embedder.feeder import Tokenized

        limit = (self.max_len + 1) * 12
        ids, cut = self._encode([t[:limit] for t in texts])
        redo = [i for i, t in enumerate(texts) if len(t) > limit and not cut[i]]
        if redo:
            r_ids, r_cut = self._encode([texts[i] for i in redo])
            for j, i in enumerate(redo):
                ids[i], cut[i] = r_ids[j], r_cut[j]
        return Tokenized(np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)), int(sum(cut)), ids, None)

    def _encode(self, texts):
        enc = self.tokenizer(
            [self.prompt + t for t in texts],
            truncation=True,
            max_length=self.max_len,
            return_overflowing_tokens=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        sample = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
        first = np.flatnonzero(np.r_[True, sample[1:] != sample[:-1]]) if len(sample) else sample
        cut = np.bincount(sample, minlength=len(texts)) > 1
        return [enc["input_ids"][k] for k in first], cut.tolist()

    def batches(self, tok, max_tokens):
        return self.new.batches(tok, max_tokens)

    def collate(self, tok, rows):
        import torch

        from embedder.batching import computed_tokens
        from embedder.feeder import Batch

        width = int(tok.lengths[rows].max())
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for k, row in enumerate(rows):
            n = int(tok.lengths[row])
            ids[k, :n], mask[k, :n] = tok.ids[row], 1
        features = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "token_type_ids": torch.zeros_like(torch.from_numpy(ids)),
            "modality": "text",
        }
        return Batch(rows, features, computed_tokens(tok.lengths[rows], False))


def write_corpus(path: Path, texts: list[str]) -> Path:
    from bench.gpu_check import write_corpus as write

    return write(path, texts)


def host_capacity(kind: str, docs: int, max_len: int, budget: int, flush_rows: int, repeats: int = 3) -> dict:
    """Docs/s and tokens/s of read, tokenise, group, collate and write, in this process: today's loop and
    the old one alternately, ``repeats`` times each, the best of each (a shared machine is noisy)."""
    texts = wiki_texts(docs) if kind == "wiki" else vital_texts(docs)
    model = load_model(max_len)
    best: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus.h5", texts)
        for rep in range(repeats):
            for loop in ("old", "new"):
                row = _prepare_all(
                    model, loop, corpus, Path(tmp) / f"shard-{rep}-{loop}.h5", docs, budget, flush_rows
                )
                if row["docs_s"] > best.get(loop, {}).get("docs_s", 0):
                    best[loop] = row
    return best


def _prepare_all(
    model, loop: str, corpus: Path, shard: Path, docs: int, budget: int, flush_rows: int
) -> dict:
    from embedder.feeder import FastCollator
    from kit.corpusfile import read_chunks
    from embedder.shard import ShardWriter
    from kit.shardfile import ShardIdentity, ShardSpec

    collator = FastCollator(model, "") if loop == "new" else LegacyCollator(model)
    writer = ShardWriter(shard, ShardSpec(0, 0, docs), ShardIdentity(model="feed_rate", dim=384), {})
    t0, tokens, computed = time.perf_counter(), 0, 0
    for _, chunk, ids in read_chunks(corpus, 0, docs, flush_rows):
        tok = collator.tokenize(chunk)
        for rows in collator.batches(tok, budget):
            computed += collator.collate(tok, rows).tokens
        tokens += int(tok.lengths.sum())
        writer.append(np.zeros((len(chunk), 384), dtype=np.float32), ids)
    seconds = time.perf_counter() - t0
    writer.close()
    return {"docs_s": docs / seconds, "tokens_s": tokens / seconds, "computed_tokens_s": computed / seconds}


def simulated_device(model, rate_tokens_s: float, busy: list[float]):
    """Replace ``model``'s forward: sleep computed tokens / rate (the GIL released), zeros of the right shape."""
    import torch

    dim = int(model.get_embedding_dimension())

    def forward(features, **kwargs):
        ids = features["input_ids"]
        seconds = ids.numel() / rate_tokens_s
        time.sleep(seconds)
        busy.append(seconds)
        rows = len(features["cu_seq_lens_q"]) - 1 if "cu_seq_lens_q" in features else ids.shape[0]
        return {"sentence_embedding": torch.ones(rows, dim)}

    model.forward = forward
    return model


def overlap(docs: int, rate_tokens_s: float, loop: str, budget: int, flush_rows: int) -> dict:
    """The share of wall time the simulated device is busy, for the whole shard (commit included)."""
    from embedder.encode import TextEncoder
    from embedder.prefetch import BackgroundWriter
    from kit.corpusfile import read_chunks
    from embedder.shard import ShardWriter
    from kit.shardfile import ShardIdentity, ShardSpec

    busy: list[float] = []
    model = simulated_device(load_model(256), rate_tokens_s, busy)
    enc = TextEncoder(model, prompt="", normalize=False, max_tokens=budget)
    if loop == "old":
        # the old feeder has the collators' methods but is not one of their classes
        enc.collator = LegacyCollator(model)  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus.h5", wiki_texts(docs))
        writer = ShardWriter(
            Path(tmp) / "shard-00000.h5", ShardSpec(0, 0, docs), ShardIdentity(model="feed_rate", dim=384), {}
        )
        t0 = time.perf_counter()
        chunks = enc.encode_chunks(read_chunks(corpus, 0, docs, flush_rows))
        if loop == "old":  # writes on the compute thread
            for _, ids, emb in chunks:
                writer.append(emb, ids)
        else:
            with BackgroundWriter(writer.append) as background:
                for _, ids, emb in chunks:
                    background.put(emb, ids)
        writer.h5.flush()
        writer.close()
        wall = time.perf_counter() - t0
    return {"busy_pct": 100 * sum(busy) / wall, "wall_s": wall, "rate_tokens_s": rate_tokens_s}


def in_process(cores: int, fn: str, **kwargs) -> dict:
    """Run ``fn(**kwargs)`` in a fresh interpreter pinned to ``cores`` cores (the tokenizer's thread pool
    is sized once per process)."""
    code = (
        f"import json, os, sys; sys.path.insert(0, {str(REPO)!r}); sys.path.insert(0, {str(REPO / 'bench')!r});"
        f"os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:{cores}]);"
        f"import feed_rate; print('RESULT' + json.dumps(feed_rate.{fn}(**{kwargs!r})))"
    )
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "true",
        "RAYON_NUM_THREADS": str(cores),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))[6:])


def _spin(core: int) -> float:
    """A fixed CPU-bound unit of work on one core; its wall seconds."""
    os.sched_setaffinity(0, [core])
    t0 = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - t0


def machine_scaling(cores: list[int], repeats: int = 3) -> float:
    """Throughput of ``len(cores)`` processes, one per core, over one process: what this machine's cores
    give to perfectly parallel work (two vCPUs that share a physical core give ~1.3x, not 2x)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    best = 0.0
    with ctx.Pool(len(cores)) as pool:
        for _ in range(repeats):
            one = pool.apply(_spin, (cores[0],))
            t0 = time.perf_counter()
            pool.map(_spin, cores, chunksize=1)
            best = max(best, len(cores) * one / (time.perf_counter() - t0))
    return best


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=8000, help="texts per measurement")
    parser.add_argument("--budget", type=int, default=32768, help="token budget per batch (the CUDA default)")
    parser.add_argument(
        "--flush-rows", type=int, default=256, help="rows per chunk (the first one is not overlapped)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="alternating runs of each loop; the best counts"
    )
    parser.add_argument(
        "--overlap-docs",
        type=int,
        default=None,
        help="texts in (b), a shard's worth (default: --docs); its first chunk is never overlapped",
    )
    parser.add_argument("--quick", action="store_true", help="Wikipedia-length texts and MiniLM only")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    cores_all = len(os.sched_getaffinity(0))
    out: dict = {
        "cores": cores_all,
        "docs": args.docs,
        "overlap_docs": args.overlap_docs or args.docs,
        "capacity": [],
        "overlap": [],
    }
    cases = [("wiki", 256)] if args.quick else [("wiki", 256), ("vital", 256), ("wiki", 512)]
    for kind, max_len in cases:
        for cores in sorted({1, cores_all}):
            best = in_process(
                cores,
                "host_capacity",
                kind=kind,
                docs=args.docs,
                max_len=max_len,
                budget=args.budget,
                flush_rows=args.flush_rows,
                repeats=args.repeats,
            )
            for loop in ("old", "new"):
                row = {**best[loop], "kind": kind, "max_len": max_len, "cores": cores, "loop": loop}
                out["capacity"].append(row)
                print(
                    f"(a) {kind:5} max_len {max_len} {cores} core(s) {loop:3} loop: {row['docs_s']:8.0f} docs/s "
                    f"{row['tokens_s']:9.0f} tokens/s (best of {args.repeats})",
                    flush=True,
                )
    if cores_all > 1:
        new = {r["cores"]: r["docs_s"] for r in out["capacity"] if (r["kind"], r["loop"]) == ("wiki", "new")}
        out["machine_scaling"] = machine_scaling(sorted(os.sched_getaffinity(0)))
        print(
            f"(a) 1 -> {cores_all} cores: new loop {new[cores_all] / new[1]:.2f}x; this machine's cores on "
            f"perfectly parallel work {out['machine_scaling']:.2f}x (one process per core, same run)",
            flush=True,
        )
    for loop in ("old", "new"):
        cap = next(
            r
            for r in out["capacity"]
            if (r["kind"], r["max_len"], r["cores"], r["loop"]) == ("wiki", 256, cores_all, loop)
        )
        rate = 0.8 * cap["computed_tokens_s"]
        row = in_process(
            cores_all,
            "overlap",
            docs=args.overlap_docs or args.docs,
            rate_tokens_s=rate,
            loop=loop,
            budget=args.budget,
            flush_rows=args.flush_rows,
        )
        row["loop"] = loop
        out["overlap"].append(row)
        print(
            f"(b) {loop} loop, simulated device at 80 % of host capacity ({rate:.0f} tokens/s): busy "
            f"{row['busy_pct']:.1f} % of {row['wall_s']:.1f} s",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
