"""The CUDA path's fail-safes, on CPU: fakes stand in for the device (issue 20, findings 1, 2 and 4-10)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch

from embedder import model as model_lib
from embedder.config import ComputeSettings, EmbedIdentity
from embedder.corpus import CorpusOptions, prepare
from embedder.encode import TextEncoder
from embedder.feeder import FastCollator, Tokenized
from embedder.kernels import check_flash_attention
from embedder.loader import compute_dtype_for
from embedder.run import embed_shards
from jobs.demo import vital_articles
from kit.errors import ConfigError, EncodeError
from kit.format import CORPUS_FILE
from kit.shardfile import ShardIdentity, ShardSpec, read_header, shard_path
from tests.conftest import cosine_rows

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def texts():
    return [r["text"] for r in vital_articles(36)]


def _corpus(tmp_path: Path, n: int) -> list[dict]:
    records = list(vital_articles(n))
    prepare(iter(records), tmp_path / CORPUS_FILE, CorpusOptions(), "test")
    return records


# 1: a task that holds a GPU torch cannot use refuses before loading the model.
@pytest.mark.parametrize("variable", ["CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS"])
def test_a_held_gpu_that_torch_cannot_use_is_refused_before_the_model_loads(
    tmp_path, monkeypatch, model_path, variable
):
    _corpus(tmp_path, 4)
    # The task sets CUDA_VISIBLE_DEVICES from SLURM_*_GPUS (embedder.hardware): recorded here, so it is undone.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv(variable, "0")
    loads = []
    monkeypatch.setattr(model_lib, "load_model", lambda *a, **k: loads.append(a))
    with pytest.raises(
        ConfigError,
        match=rf"holds or asks for a GPU \((CUDA_VISIBLE_DEVICES=0, )?{variable}=0\).*torch .* built for CUDA .*"
        r"NVIDIA driver .*DEVICE=cpu",
    ):
        embed_shards([ShardSpec(0, 0, 4)], tmp_path, EmbedIdentity(model=str(model_path)), ComputeSettings())
    assert loads == [] and not shard_path(tmp_path, 0).exists()


def test_device_choice_without_a_gpu_claim_and_on_purpose():
    assert model_lib.pick_device("auto", environ={}) == "cpu"
    assert (
        model_lib.pick_device("auto", environ={"CUDA_VISIBLE_DEVICES": "", "SLURM_GPUS_ON_NODE": "0"})
        == "cpu"
    )
    assert (
        model_lib.pick_device("cpu", environ={"CUDA_VISIBLE_DEVICES": "0"}) == "cpu"
    )  # DEVICE=cpu on purpose
    with pytest.raises(ConfigError, match="DEVICE=cuda"):
        model_lib.pick_device("cuda", environ={})
    with pytest.raises(ConfigError, match="the profile requests GPUs"):
        model_lib.pick_device("auto", gpus_requested=True, environ={})


def test_each_shard_records_its_gpu(tmp_path, model_path):
    _corpus(tmp_path, 6)
    embed_shards(
        [ShardSpec(0, 0, 6)], tmp_path, EmbedIdentity(model=str(model_path)), ComputeSettings(device="cpu")
    )
    assert read_header(shard_path(tmp_path, 0)).attrs["gpu"] == ""  # the name off CUDA: none


# 2: a feeder failure raises in the chunk it belongs to; no chunk is returned with rows not computed.
class _FailingCollator(FastCollator):
    def __init__(self, model, fail_at: int):
        super().__init__(model, "")
        self.calls, self.fail_at = 0, fail_at

    def collate(self, tok, rows):
        self.calls += 1
        if self.calls == self.fail_at:
            raise MemoryError(f"injected at collate {self.fail_at}")
        return super().collate(tok, rows)


@pytest.mark.parametrize("threaded", [True, False])
def test_a_collate_failure_at_any_position_raises_in_its_chunk(st_model, texts, threaded):
    reference = st_model.encode(texts)
    chunks = [(s, texts[s : s + 12], s) for s in range(0, len(texts), 12)]
    probe = TextEncoder(st_model, prompt="", normalize=False, max_tokens=1024, threaded=threaded)
    probe.collator = _FailingCollator(st_model, fail_at=0)
    list(probe.encode_chunks(chunks))
    assert probe.collator.calls >= 6
    for fail_at in range(1, probe.collator.calls + 1):
        enc = TextEncoder(st_model, prompt="", normalize=False, max_tokens=1024, threaded=threaded)
        enc.collator = _FailingCollator(st_model, fail_at)
        done = []
        with pytest.raises(MemoryError, match=f"injected at collate {fail_at}"):
            for start, _, emb in enc.encode_chunks(chunks):
                done.append((start, emb))
        for start, emb in done:  # every chunk handed out is whole and right
            assert cosine_rows(emb, reference[start : start + len(emb)]).min() >= 0.9999, (fail_at, start)


def test_rows_no_forward_pass_filled_are_refused(st_model, texts, monkeypatch):
    enc = TextEncoder(st_model, prompt="", normalize=False, max_tokens=1024)
    real = enc.collator.batches
    monkeypatch.setattr(enc.collator, "batches", lambda tok, budget: real(tok, budget)[1:])  # one batch lost
    with pytest.raises(EncodeError, match=r"rows of the chunk at corpus row 0 were never computed"):
        enc.encode(texts[:12])


# 4: HF_HUB_OFFLINE reaches huggingface_hub even after it was imported.
def test_offline_mode_holds_after_the_hub_library_was_imported():
    code = (
        "import huggingface_hub, transformers.utils.hub as tu\n"
        "assert not huggingface_hub.is_offline_mode()\n"
        "from embedder.model import force_offline\nforce_offline()\n"
        "assert huggingface_hub.is_offline_mode() and tu.is_offline_mode()\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


# 5: flash attention gaps.
def test_a_flash_attn_that_cannot_be_imported_is_refused(tmp_path, monkeypatch):
    package = tmp_path / "flash_attn"
    package.mkdir()
    (package / "__init__.py").write_text(
        "raise ImportError('flash_attn_2_cuda.so: undefined symbol: _ZN3c10')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="flash-attn is installed but cannot be imported.*undefined symbol"):
        check_flash_attention("cuda", "bfloat16", capability=(9, 0))


def test_flash_needs_ampere():
    with pytest.raises(
        ConfigError, match=r"Ampere or newer GPU \(compute capability 8.0\+\); this one is 7.5"
    ):
        check_flash_attention("cuda", "bfloat16", capability=(7, 5))


def test_a_zero_token_row_stays_one_sequence_in_a_packed_batch(st_model):
    collator = FastCollator(st_model, "")
    collator.packed = True
    tok = Tokenized(np.array([3, 0, 2]), 0, [[101, 7, 102], [], [101, 102]], None)
    features = collator.collate(tok, np.array([0, 1, 2])).features
    assert features["cu_seq_lens_q"].tolist() == [0, 3, 4, 6]  # three rows, three sequences
    assert features["position_ids"].tolist() == [[0, 1, 2, 0, 0, 1]]


# 6: bfloat16 only where the GPU has bfloat16 tensor cores.
def test_older_gpus_compute_in_float16_by_default():
    assert compute_dtype_for("cuda", None, (7, 0)) == "float16"  # V100
    assert compute_dtype_for("cuda", None, (7, 5)) == "float16"  # T4
    assert compute_dtype_for("cuda", None, (8, 0)) == "bfloat16"  # A100
    assert compute_dtype_for("cuda", "bfloat16", (7, 0)) == "bfloat16"  # asked for: kept


# 7: out of memory.
def _oom_when(model, refuse):
    def hook(module, args):
        if refuse(args[0]["input_ids"]):
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    return model.register_forward_pre_hook(hook)


def test_a_transient_oom_frees_garbage_and_the_budget_grows_back(st_model, texts, monkeypatch):
    collected = []
    monkeypatch.setattr("embedder.encode.gc.collect", lambda: collected.append(1))
    state = {"left": 1}

    def once(ids):
        if ids.numel() > 600 and state["left"]:
            state["left"] -= 1
            return True
        return False

    enc = TextEncoder(st_model, prompt="", normalize=False, max_tokens=2048)
    handle = _oom_when(st_model, once)
    try:
        out = np.concatenate(
            [e for *_, e in enc.encode_chunks([(s, texts[s : s + 6], None) for s in range(0, 36, 6)])]
        )
    finally:
        handle.remove()
    assert enc.counters.oom_splits == 1 and collected and enc.lowest_tokens < 2048
    assert enc.max_tokens == 2048  # back to where it started after clean chunks
    assert cosine_rows(out, st_model.encode(texts)).min() >= 0.9999


def test_a_single_row_is_retried_once_after_an_oom(st_model, texts):
    state = {"left": 1}

    def first_single(ids):
        if ids.shape[0] == 1 and state["left"]:
            state["left"] -= 1
            return True
        return False

    enc = TextEncoder(st_model, prompt="", normalize=False, max_tokens=2048)
    handle = _oom_when(st_model, first_single)
    try:
        out = enc.encode(texts[:1])
    finally:
        handle.remove()
    assert state["left"] == 0 and cosine_rows(out, st_model.encode(texts[:1])).min() >= 0.9999


def test_the_float32_rerun_survives_its_own_oom_and_is_freed(model_path, st_model, texts):
    from sentence_transformers import SentenceTransformer

    loaded = []

    def fallback():
        model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        model.register_forward_pre_hook(
            lambda m, args: (
                (_ for _ in ()).throw(torch.OutOfMemoryError("injected"))
                if args[0]["input_ids"].shape[0] > 1
                else None
            )
        )
        loaded.append(model)
        return model

    bad = st_model.tokenizer(texts[3])["input_ids"][1]

    def nan_rows(module, args, output):
        output["sentence_embedding"][args[0]["input_ids"][:, 1] == bad] = float("nan")
        return output

    enc = TextEncoder(st_model, prompt="", normalize=False, max_tokens=4096, fallback=fallback)
    handle = st_model.register_forward_hook(nan_rows)
    try:
        out = enc.encode(texts[:8] + [texts[3]])
    finally:
        handle.remove()
    assert enc.counters.recomputed_rows == 2 and enc._fallback is None and loaded
    assert cosine_rows(out, st_model.encode(texts[:8] + [texts[3]])).min() >= 0.9999


def test_a_failed_float32_rerun_names_the_rows_and_the_fix(st_model, texts):
    def no_memory():
        raise torch.OutOfMemoryError("injected")

    enc = TextEncoder(st_model, prompt="", normalize=False, max_tokens=4096, fallback=no_memory)
    handle = st_model.register_forward_hook(
        lambda m, a, o: {**o, "sentence_embedding": o["sentence_embedding"] * np.nan}
    )
    try:
        with pytest.raises(
            EncodeError,
            match="float32 rerun ran out of cpu memory; first is corpus row 0.*COMPUTE_DTYPE=float32",
        ):
            enc.encode(texts[:2])
    finally:
        handle.remove()


def test_expandable_segments_are_set_before_cuda_starts(tmp_path, monkeypatch, model_path):
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    _corpus(tmp_path, 3)
    embed_shards(
        [ShardSpec(0, 0, 3)], tmp_path, EmbedIdentity(model=str(model_path)), ComputeSettings(device="cpu")
    )
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert os.environ["RAYON_NUM_THREADS"].isdigit()


def test_the_tokenizer_gets_the_task_cores():
    from embedder.run import task_cpus

    cores = len(os.sched_getaffinity(0))
    assert task_cpus({}) == cores
    assert task_cpus({"SLURM_CPUS_PER_TASK": "1"}) == 1
    assert task_cpus({"SLURM_CPUS_PER_TASK": str(cores + 64)}) == cores  # never more than the mask allows


# 8: MAX_SEQ_LENGTH past the position embeddings.
def test_max_seq_length_past_the_positions_is_a_clear_error(model_path):
    identity = EmbedIdentity(model=str(model_path), max_seq_length=1000)
    with pytest.raises(ConfigError, match=r"MAX_SEQ_LENGTH=1000 is more than .* has positions for \(512"):
        model_lib.load_model(model_lib.resolve_model(identity), identity, "cpu", "float32")


# 9: the fingerprint pinned at submit is used; the task does not hash the weights.
def test_the_task_uses_the_fingerprint_pinned_in_run_json(tmp_path, monkeypatch, model_path):
    _corpus(tmp_path, 3)
    identity = EmbedIdentity(model=str(model_path))
    pinned = ShardIdentity(model=str(model_path), model_fingerprint="pinned-at-submit")

    def hashing(_):
        raise AssertionError("the task hashed the weights")

    monkeypatch.setattr(model_lib, "weights_fingerprint", hashing)
    embed_shards([ShardSpec(0, 0, 3)], tmp_path, identity, ComputeSettings(device="cpu"), pinned)
    assert read_header(shard_path(tmp_path, 0)).attrs["model_fingerprint"] == "pinned-at-submit"


def test_the_task_loads_exactly_the_prompt_and_token_limit_run_json_pins(tmp_path, monkeypatch, model_path):
    _corpus(tmp_path, 3)
    identity = EmbedIdentity(model=str(model_path))
    pinned = ShardIdentity(
        model=str(model_path),
        model_revision="local",
        model_fingerprint="pinned-at-submit",
        prompt="passage: ",
        max_seq_length=64,
    )
    monkeypatch.setattr(
        model_lib, "weights_fingerprint", lambda _: pytest.fail("the task hashed the weights")
    )
    embed_shards([ShardSpec(0, 0, 3)], tmp_path, identity, ComputeSettings(device="cpu"), pinned)
    shard = read_header(shard_path(tmp_path, 0)).identity
    assert (shard.prompt, shard.max_seq_length, shard.model_fingerprint) == (
        "passage: ",
        64,
        "pinned-at-submit",
    )
    assert pinned.differences(shard) == {}  # what the merge will check


# 10: dependency floors at the APIs used.
def test_dependency_floors_cover_the_apis_used():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {d.split(">=")[0]: tuple(int(x) for x in d.split(">=")[1].split(".")) for d in deps if ">=" in d}
    assert floors["torch"] >= (2, 5)  # torch.OutOfMemoryError
    assert floors["sentence-transformers"] >= (6, 0)  # sentence_transformers.base.modules, can_flatten_inputs
    assert hasattr(torch, "OutOfMemoryError")
