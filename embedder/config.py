"""What the vectors are, as asked (EmbedIdentity), and how they are computed (ComputeSettings).

Identity is fixed for a run: every shard must agree on it, and a change is a new run (or
``REDO=all``). Submit resolves the request into the ``kit.shardfile.ShardIdentity`` that run.json
pins and every shard records (the revision's commit, the weights' fingerprint, a prompt name's
literal text, the model's token limit). Compute settings may change on any re-submit (after an out-of-memory failure,
on another GPU type) and are recorded in each shard. The rows a task embeds are a
``kit.shardfile.ShardSpec``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kit.errors import ConfigError

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("auto", "cuda", "mps", "cpu")
ATTENTIONS = ("sdpa", "eager", "flash")  # None: the model's own choice (PyTorch SDPA where supported)
# Token budget per forward pass when none is given: CPUs are fastest with small batches
# (bench/embed_throughput.py), GPUs need large ones to fill their cores. The CUDA figure is not
# measured yet (bench/gpu_throughput.py --device cuda); an out-of-memory batch is split and retried.
DEFAULT_TOKENS_PER_BATCH = {"cpu": 2048, "mps": 8192, "cuda": 32768}
# Compute dtype when none is given. bfloat16 on CUDA: about twice float32's speed for these models,
# and float16 overflows in Gemma-3 models; rows that come out non-finite are redone in float32.
# CPU keeps float32 (bfloat16 measured no faster on a 2-core AVX-512-BF16 Xeon, and far slower
# without native bf16); MPS keeps float32 (not measured).
DEFAULT_COMPUTE_DTYPE = {"cpu": "float32", "mps": "float32", "cuda": "bfloat16"}


@dataclass(frozen=True)
class EmbedIdentity:
    """What the vectors depend on, besides the corpus: fixed for a run, recorded in run.json."""

    model: str  # hub name (e.g. "google/embeddinggemma-300m") or a local folder (absolute)
    revision: str | None = None  # hub revision; pinned to the resolved commit at submit
    prompt_name: str | None = None  # a prompt the model defines (e.g. "document")
    prompt: str | None = None  # or a literal prompt prepended to every text
    normalize_embeddings: bool = False  # L2-normalise (models with a Normalize module already are)
    max_seq_length: int | None = None  # None keeps the model's own

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("No model given. Pass MODEL=<hub name or local folder>.")
        if self.prompt_name and self.prompt is not None:
            raise ConfigError("Give a prompt name (PROMPT_NAME) or a literal prompt (PROMPT), not both.")
        if self.max_seq_length is not None and self.max_seq_length < 1:
            raise ConfigError(f"MAX_SEQ_LENGTH must be at least 1, got {self.max_seq_length}.")

    @property
    def model_is_local(self) -> bool:
        return Path(self.model).expanduser().is_dir()


@dataclass(frozen=True)
class ComputeSettings:
    """How vectors are computed: may change on any re-submit; each shard records what it used."""

    device: str = "auto"  # auto: cuda, then mps, then cpu
    compute_dtype: str | None = None  # None: the device's default; non-finite rows are redone in float32
    max_tokens_per_batch: int | None = None  # rows x longest row per forward pass; None: by device
    flush_rows: int = 2048  # rows embedded between two flushes of the shard (resume granularity)
    cache_dir: str | None = None  # hub cache; None uses HF_HOME / HF_HUB_CACHE
    attention: str | None = None  # sdpa | eager | flash (packed, padding-free; CUDA); None: the model's own
    pin_memory: bool = False  # CUDA: copy batches through reused page-locked buffers (not yet measured)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"Unknown DEVICE {self.device!r}. Choose from: {', '.join(DEVICES)}.")
        if self.compute_dtype is not None and self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(
                f"Unknown COMPUTE_DTYPE {self.compute_dtype!r}. Choose from: {', '.join(COMPUTE_DTYPES)}."
            )
        if self.attention is not None and self.attention not in ATTENTIONS:
            raise ConfigError(f"Unknown ATTENTION {self.attention!r}. Choose from: {', '.join(ATTENTIONS)}.")
        for name in ("max_tokens_per_batch", "flush_rows"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
