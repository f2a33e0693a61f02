"""Model shapes, FLOP per token and device peaks for the GPU benchmarks (no jobs/ import, no network).

Models are randomly initialised in the shapes of real embedders, with the tokenizer of the
all-MiniLM-L6-v2 folder given; random weights are fine for timing, never for parity against
another text (rows of random models all look alike: compare a row only with its own reference).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

# name: (family, layers, hidden, heads, kv heads, head_dim, intermediate, max_seq_length, pooling)
SHAPES = {
    "tiny": ("bert", 2, 64, 2, 2, 32, 256, 256, "mean"),
    "qwen3-tiny": ("qwen3", 2, 64, 4, 2, 16, 128, 256, "lasttoken"),
    "minilm": ("bert", 6, 384, 12, 12, 32, 1536, 256, "mean"),
    "bert-base": ("bert", 12, 768, 12, 12, 64, 3072, 512, "mean"),
    "bge-large": ("bert", 24, 1024, 16, 16, 64, 4096, 512, "cls"),
    # Qwen3-Embedding-0.6B: head_dim 128 (not hidden / heads = 64): 440M non-embedding parameters.
    "qwen3-0.6b": ("qwen3", 28, 1024, 16, 8, 128, 3072, 2048, "lasttoken"),
}
# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, by a substring of the device name; the longest
# matching key wins ("H100 NVL" before "H100"). V100 and T4: their fp16 peak (no bf16 tensor cores).
PEAKS_TFLOPS = {
    "H100 NVL": 835,
    "H100 PCIe": 756,
    "H100": 989,
    "H200 NVL": 835,
    "H200": 989,
    "GH200": 989,
    "B200": 2250,
    "A100": 312,
    "A800": 312,
    "L40S": 362,
    "L40": 181,
    "A10G": 70,
    "A10": 125,
    "L4": 121,
    "A40": 150,
    "RTX 6000 Ada": 364,
    "V100": 125,
    "T4": 65,
}
FULL_SMS = {"H100": 132, "H200": 132, "GH200": 132, "A100": 108, "A800": 108}  # to scale a MIG slice's peak


def non_embedding_params(shape: str) -> int:
    """Weights of the layers (attention and MLP), without embeddings, norms, biases or the BERT pooler."""
    family, layers, hidden, heads, kv, head_dim, inter, _, _ = SHAPES[shape]
    attention = hidden * heads * head_dim * 2 + hidden * kv * head_dim * 2  # q, o and k, v
    mlp = (3 if family == "qwen3" else 2) * hidden * inter  # gated (SwiGLU) MLP has three matrices
    return layers * (attention + mlp)


def flops_per_token(shape: str, context: float) -> float:
    """2 x non-embedding parameters, plus attention scores and values (4 x layers x context x width),
    halved for a causal model (each token attends to those before it). ``context``: mean tokens a
    token attends to in a padded row (its row's length)."""
    family, layers, _, heads, _, head_dim, _, _, _ = SHAPES[shape]
    attention = 4.0 * layers * context * heads * head_dim * (0.5 if family == "qwen3" else 1.0)
    return 2.0 * non_embedding_params(shape) + attention


def peak_tflops(name: str | None = None, sms: int | None = None) -> float | None:
    """The dense bf16 peak of the CUDA device (or of ``name``), scaled for a MIG slice; None off CUDA."""
    import torch

    if name is None:
        if not torch.cuda.is_available():
            return None
        name, sms = torch.cuda.get_device_name(), torch.cuda.get_device_properties(0).multi_processor_count
    keys = [k for k in PEAKS_TFLOPS if k in name]
    if not keys:
        return None
    key = max(keys, key=len)
    peak = float(PEAKS_TFLOPS[key])
    full = next((n for k, n in FULL_SMS.items() if k in key), None)
    if "MIG" in name and full and sms:
        peak *= min(sms / full, 1.0)
    return peak


def build(shape: str, folder: Path, tokenizer_path: Path, padding_side: str | None = None) -> Path:
    """Save a randomly initialised SentenceTransformer of ``shape`` (seeded) in ``folder``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import AutoModel, AutoTokenizer, BertConfig, PretrainedConfig, Qwen3Config

    family, layers, hidden, heads, kv, head_dim, inter, max_len, pooling = SHAPES[shape]
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path))
    if padding_side:
        tokenizer.padding_side = padding_side
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": inter,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config: PretrainedConfig
    if family == "bert":
        config = BertConfig(max_position_embeddings=512, **common)
    else:
        config = Qwen3Config(
            num_key_value_heads=kv, head_dim=head_dim, max_position_embeddings=32768, **common
        )
    torch.manual_seed(0)
    backbone = folder / "backbone"
    AutoModel.from_config(config).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    transformer = Transformer(str(backbone), max_seq_length=max_len)
    SentenceTransformer(modules=[transformer, Pooling(hidden, pooling_mode=pooling)], device="cpu").save(
        str(folder)
    )
    return folder


def shape_model(
    shape: str, tokenizer_path: Path, device: str, dtype: str = "float32", padding_side: str | None = None
):
    """A random-weight SentenceTransformer of ``shape`` on ``device`` (its folder lives until exit)."""
    import torch
    from sentence_transformers import SentenceTransformer

    folder = build(shape, Path(tempfile.mkdtemp(prefix=f"shape-{shape}-")), tokenizer_path, padding_side)
    model = SentenceTransformer(
        str(folder), device=device, local_files_only=True, model_kwargs={"dtype": getattr(torch, dtype)}
    )
    if padding_side:
        model.tokenizer.padding_side = padding_side
    return model
