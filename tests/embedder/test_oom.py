"""Out of memory: a batch too big for the device is split and retried; the shard says so."""

from pathlib import Path

import h5py
import pytest
import torch

from embedder import model as model_lib
from embedder.config import ComputeSettings, EmbedIdentity
from embedder.corpus import CorpusOptions, prepare
from embedder.run import embed_shards
from jobs.demo import vital_articles
from kit.errors import EncodeError
from kit.format import CORPUS_FILE
from kit.shardfile import ShardSpec, shard_path
from tests.conftest import cosine_rows


def _device_holding(monkeypatch, max_tokens: int) -> list[int]:
    """Models loaded from now on raise CUDA's out-of-memory error on batches above ``max_tokens``."""
    real_load, refused = model_lib.load_model, []

    def too_big(module, args):
        tokens = args[0]["input_ids"].numel()
        if tokens > max_tokens:
            refused.append(tokens)
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate for {tokens} tokens")

    def load_model(*args, **kwargs):
        model = real_load(*args, **kwargs)
        model.register_forward_pre_hook(too_big)
        return model

    monkeypatch.setattr(model_lib, "load_model", load_model)
    return refused


def _run(tmp_path: Path, records: list[dict], model_path, **compute):
    prepare(iter(records), tmp_path / CORPUS_FILE, CorpusOptions(), "test")
    return embed_shards(
        [ShardSpec(0, 0, len(records))],
        tmp_path,
        EmbedIdentity(model=str(model_path)),
        ComputeSettings(device="cpu", **compute),
    )


def test_batches_too_big_are_split_and_the_shard_completes(
    tmp_path, monkeypatch, model_path, st_model, caplog
):
    records = list(vital_articles(120))
    refused = _device_holding(monkeypatch, max_tokens=1500)
    result = _run(tmp_path, records, model_path, max_tokens_per_batch=8192, flush_rows=50)[0]
    assert result.status == "done" and refused and min(refused) > 1500
    with h5py.File(shard_path(tmp_path, 0)) as h5:
        emb, attrs = h5["embeddings"][:], dict(h5.attrs)
    assert cosine_rows(emb, st_model.encode([r["text"] for r in records])).min() >= 0.9999
    assert attrs["oom_splits"] == len(refused) >= 1
    # what each attempt used, comma-joined (embedder.run._used): one attempt, the budget asked for
    assert attrs["max_tokens_per_batch"] == "8192"
    assert attrs["max_tokens_per_batch_settled"] <= 1500
    assert (attrs["compute_dtype"], attrs["attention"]) == ("float32", "sdpa")
    assert attrs["text_tokens"] <= attrs["computed_tokens"]
    assert "out of memory on a batch" in caplog.text and "token budget now" in caplog.text


def test_a_single_row_that_does_not_fit_names_the_row_and_the_fix(tmp_path, monkeypatch, model_path):
    records = list(vital_articles(30))
    records[17] = {**records[17], "text": "word " * 400}  # 256 tokens after truncation
    _device_holding(monkeypatch, max_tokens=200)
    with pytest.raises(
        EncodeError,
        match=r"Corpus row \d+ \(256 tokens\) does not fit in cpu memory even alone"
        r".*MAX_SEQ_LENGTH= below 256",
    ):
        _run(tmp_path, records, model_path, max_tokens_per_batch=4096)
