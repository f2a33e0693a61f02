"""The encoder against the real all-MiniLM-L6-v2 on real Vital Articles."""

import numpy as np
import pytest
import torch

from embedder.encode import TextEncoder, token_lengths
from jobs.demo import vital_articles
from kit.errors import EncodeError
from tests.conftest import cosine_rows


@pytest.fixture(scope="module")
def texts():
    rows = [r["text"] for r in vital_articles(80)]
    return rows + ["short", "a " * 600]  # one tiny, one far past max_seq_length


def test_token_batches_equal_plain_encode_in_input_order(st_model, texts):
    enc = TextEncoder(st_model, prompt="", normalize=False, max_tokens=1024)
    ours = enc.encode(texts)
    plain = st_model.encode(texts, convert_to_numpy=True)
    assert ours.dtype == np.float32 and ours.shape == (len(texts), 384)
    assert cosine_rows(ours, plain).min() >= 0.9999
    assert enc.counters.batches > 1
    lengths = token_lengths(st_model.tokenizer, texts, "", st_model.max_seq_length)
    assert enc.counters.truncated_rows == int((lengths > st_model.max_seq_length).sum()) >= 1


def test_prompt_is_prepended(st_model, texts):
    enc = TextEncoder(st_model, prompt="query: ", normalize=False, max_tokens=4096)
    ours = enc.encode(texts[:5])
    plain = st_model.encode(["query: " + t for t in texts[:5]])
    assert cosine_rows(ours, plain).min() >= 0.9999


def test_bfloat16_stays_close_to_float32(model_path, st_model, texts):
    from sentence_transformers import SentenceTransformer

    bf16 = SentenceTransformer(str(model_path), device="cpu", model_kwargs={"dtype": torch.bfloat16})
    low = TextEncoder(bf16, prompt="", normalize=False, max_tokens=2048).encode(texts[:20])
    assert cosine_rows(low, st_model.encode(texts[:20])).min() >= 0.99


class _NaNRows:
    """A model whose low-precision output has NaN rows (as fp16 overflow gives)."""

    def __init__(self, model, bad_text):
        self.model, self.bad_text = model, bad_text
        self.tokenizer, self.max_seq_length = model.tokenizer, model.max_seq_length

    def get_embedding_dimension(self):
        return self.model.get_embedding_dimension()

    def encode(self, texts, **kwargs):
        out = self.model.encode(texts, **kwargs)
        out[[t == self.bad_text for t in texts]] = np.nan
        return out


def test_nonfinite_rows_are_recomputed_in_float32(st_model, texts):
    enc = TextEncoder(_NaNRows(st_model, texts[3]), prompt="", normalize=False, max_tokens=2048,
                      fallback=lambda: st_model)
    out = enc.encode(texts[:10])
    assert np.isfinite(out).all() and enc.counters.recomputed_rows == 1
    assert cosine_rows(out, st_model.encode(texts[:10])).min() >= 0.9999


def test_nonfinite_without_fallback_is_an_error(st_model, texts):
    enc = TextEncoder(_NaNRows(st_model, texts[0]), prompt="", normalize=False, max_tokens=2048)
    with pytest.raises(EncodeError, match="non-finite"):
        enc.encode(texts[:3])
