"""The encoder against the real all-MiniLM-L6-v2 on real Vital Articles."""

import numpy as np
import pytest
import torch

from embedder.encode import TextEncoder
from embedder.feeder import PreprocessCollator, token_lengths
from jobs.demo import vital_articles
from kit.errors import EncodeError
from tests.conftest import cosine_rows


@pytest.fixture(scope="module")
def texts():
    rows = [r["text"] for r in vital_articles(80)]
    return rows + ["short", "a " * 600, ""]  # one tiny, one far past max_seq_length, one empty


def test_token_batches_equal_plain_encode_in_input_order(st_model, texts):
    enc = TextEncoder(st_model, prompt="", normalize=False, max_tokens=1024)
    ours = enc.encode(texts)
    plain = st_model.encode(texts, convert_to_numpy=True)
    assert ours.dtype == np.float32 and ours.shape == (len(texts), 384)
    assert cosine_rows(ours, plain).min() >= 0.9999
    assert enc.counters.batches > 1 and enc.threaded
    lengths = token_lengths(st_model.tokenizer, texts, "", st_model.max_seq_length)
    assert enc.counters.truncated_rows == int((lengths > st_model.max_seq_length).sum()) >= 1
    assert enc.counters.text_tokens == int(np.minimum(lengths, st_model.max_seq_length).sum())
    assert enc.counters.text_tokens <= enc.counters.computed_tokens <= 1.1 * enc.counters.text_tokens


def test_chunks_come_back_in_order_with_their_payload(st_model, texts):
    enc = TextEncoder(st_model, prompt="", normalize=True, max_tokens=2048)
    read = []

    def chunks():  # lazy, like the corpus reader: consumed by the feeder thread
        for start in range(0, len(texts), 25):
            read.append(start)
            yield start, texts[start : start + 25], f"ids from {start}"

    out = list(enc.encode_chunks(chunks()))
    assert [(s, extra) for s, extra, _ in out] == [(s, f"ids from {s}") for s in range(0, len(texts), 25)]
    plain = st_model.encode(texts, normalize_embeddings=True)
    assert cosine_rows(np.concatenate([e for *_, e in out]), plain).min() >= 0.9999
    assert read == list(range(0, len(texts), 25))


def test_prompt_is_prepended(st_model, texts):
    enc = TextEncoder(st_model, prompt="query: ", normalize=False, max_tokens=4096)
    ours = enc.encode(texts[:5])
    plain = st_model.encode(["query: " + t for t in texts[:5]])
    assert cosine_rows(ours, plain).min() >= 0.9999


def test_other_models_are_preprocessed_per_batch_and_agree(st_model, texts):
    enc = TextEncoder(st_model, prompt="query: ", normalize=False, max_tokens=1024, threaded=False)
    enc.collator = PreprocessCollator(st_model, "query: ")
    ours = enc.encode(texts)
    assert cosine_rows(ours, st_model.encode(texts, prompt="query: ")).min() >= 0.9999
    assert enc.counters.truncated_rows >= 1


def test_bfloat16_stays_close_to_float32(model_path, st_model, texts):
    from sentence_transformers import SentenceTransformer

    bf16 = SentenceTransformer(str(model_path), device="cpu", model_kwargs={"dtype": torch.bfloat16})
    low = TextEncoder(bf16, prompt="", normalize=False, max_tokens=2048).encode(texts)
    assert low.dtype == np.float32
    assert cosine_rows(low, st_model.encode(texts)).min() >= 0.999


def _nan_rows_of(model, bad_first_token: int):
    """A forward hook giving NaN rows (as fp16 overflow does) to texts starting with one token."""

    def hook(module, args, output):
        rows = args[0]["input_ids"][:, 1] == bad_first_token
        output["sentence_embedding"][rows] = float("nan")
        return output

    return model.register_forward_hook(hook)


def test_nonfinite_rows_are_recomputed_in_float32(model_path, st_model, texts):
    from sentence_transformers import SentenceTransformer

    bad = "Zanzibar archipelago is the odd one out."
    token = st_model.tokenizer(bad)["input_ids"][1]
    enc = TextEncoder(
        st_model,
        prompt="",
        normalize=False,
        max_tokens=2048,
        fallback=lambda: SentenceTransformer(str(model_path), device="cpu"),
    )
    handle = _nan_rows_of(st_model, token)
    try:
        out = enc.encode(texts[:10] + [bad])
    finally:
        handle.remove()
    assert np.isfinite(out).all() and enc.counters.recomputed_rows == 1
    assert cosine_rows(out, st_model.encode(texts[:10] + [bad])).min() >= 0.9999


def test_nonfinite_without_fallback_is_an_error(st_model, texts):
    token = st_model.tokenizer(texts[2])["input_ids"][1]
    enc = TextEncoder(st_model, prompt="", normalize=False, max_tokens=2048)
    handle = _nan_rows_of(st_model, token)
    try:
        with pytest.raises(EncodeError, match="non-finite embeddings in float32; first is corpus row 2"):
            enc.encode(texts[:3])
    finally:
        handle.remove()
