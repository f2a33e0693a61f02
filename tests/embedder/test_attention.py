"""Attention back-ends agree with the reference; flash attention is refused where it cannot run."""

import pytest

from embedder import model as model_lib
from embedder.config import ComputeSettings, EmbedIdentity
from embedder.encode import TextEncoder
from embedder.kernels import check_flash_attention
from embedder.loader import compute_dtype_for
from jobs.demo import vital_articles
from kit.errors import ConfigError
from tests.conftest import cosine_rows


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_each_back_end_matches_the_reference(model_path, st_model, attention):
    texts = [r["text"] for r in vital_articles(40)] + ["a " * 600]
    identity = EmbedIdentity(model=str(model_path))
    resolved = model_lib.resolve_model(identity)
    model = model_lib.load_model(resolved, identity, "cpu", "float32", attention)
    assert model_lib.attention_description(model) == attention
    ours = TextEncoder(model, prompt="", normalize=False, max_tokens=2048).encode(texts)
    assert cosine_rows(ours, st_model.encode(texts)).min() >= 0.9999


def test_flash_is_refused_off_cuda_and_in_float32():
    with pytest.raises(
        ConfigError, match="ATTENTION=flash runs on CUDA GPUs only; this task's device is cpu"
    ):
        check_flash_attention("cpu", "float32")
    with pytest.raises(ConfigError, match="computes in bfloat16 or float16, not float32"):
        check_flash_attention("cuda", "float32")


def test_unknown_attention_is_refused():
    with pytest.raises(ConfigError, match="Unknown ATTENTION 'flash2'. Choose from: sdpa, eager, flash"):
        ComputeSettings(attention="flash2")


def test_device_defaults():
    assert compute_dtype_for("cuda", None) == "bfloat16"
    assert compute_dtype_for("cpu", None) == "float32"
    assert compute_dtype_for("cuda", "float32") == "float32"  # COMPUTE_DTYPE=float32 still gives float32
    assert compute_dtype_for("cpu", "float16") == "float32"
