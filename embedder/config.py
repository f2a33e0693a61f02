"""What one array task needs: its rows (ShardSpec) and how to embed them (EmbedConfig)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kit.errors import ConfigError

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("auto", "cuda", "mps", "cpu")
# Token budget per forward pass when none is given: CPUs are fastest with small batches
# (bench/embed_throughput.py), GPUs need large ones to fill their cores.
DEFAULT_TOKENS_PER_BATCH = {"cpu": 2048, "mps": 8192, "cuda": 32768}


@dataclass(frozen=True)
class ShardSpec:
    """Rows ``[start, stop)`` of the prepared corpus, written to ``shards/shard-<index>.h5``."""

    index: int  # position in the plan; names the file
    start: int  # first row, inclusive
    stop: int  # last row, exclusive

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def describe(self) -> str:
        return f"shard {self.index:05d} rows [{self.start}, {self.stop})"


@dataclass(frozen=True)
class EmbedConfig:
    """How texts become vectors; identical for every shard of a run (recorded in run.json)."""

    model: str  # hub name (e.g. "google/embeddinggemma-300m") or a local folder
    revision: str | None = None  # hub revision; None takes the cached default
    cache_dir: str | None = None  # hub cache; None uses HF_HOME / HF_HUB_CACHE
    device: str = "auto"  # auto: cuda, then mps, then cpu
    compute_dtype: str = "float32"  # bfloat16/float16 on GPU; non-finite rows are redone in float32
    max_tokens_per_batch: int | None = None  # rows x longest row per forward pass; None: by device
    max_seq_length: int | None = None  # None keeps the model's own
    prompt_name: str | None = None  # a prompt the model defines (e.g. "document")
    prompt: str | None = None  # or a literal prompt prepended to every text
    normalize_embeddings: bool = False  # L2-normalise (models with a Normalize module already are)
    flush_rows: int = 2048  # rows embedded between two flushes of the shard (resume granularity)

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("No model given. Pass MODEL=<hub name or local folder>.")
        if self.device not in DEVICES:
            raise ConfigError(f"Unknown device {self.device!r}. Choose from: {', '.join(DEVICES)}.")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(
                f"Unknown compute dtype {self.compute_dtype!r}. Choose from: {', '.join(COMPUTE_DTYPES)}."
            )
        if self.prompt_name and self.prompt is not None:
            raise ConfigError("Give a prompt name or a literal prompt, not both.")
        for name in ("max_tokens_per_batch", "flush_rows"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")

    @property
    def model_is_local(self) -> bool:
        return Path(self.model).expanduser().is_dir()
