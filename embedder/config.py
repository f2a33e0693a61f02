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
from kit.format import ROW_IDS

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
DEFAULT_OVERLAP_SHARE = 8  # PASSAGES=1 without OVERLAP: windows share an eighth of their tokens


@dataclass(frozen=True)
class EmbedIdentity:
    """What the vectors depend on, besides the corpus: fixed for a run, recorded in run.json."""

    model: str  # hub name (e.g. "google/embeddinggemma-300m") or a local folder (absolute)
    model_revision: str | None = None  # hub revision (REVISION=); pinned to the resolved commit at submit
    prompt_name: str | None = None  # a prompt the model defines (e.g. "document")
    prompt: str | None = None  # or a literal prompt prepended to every text
    normalize_embeddings: bool = False  # L2-normalise (models with a Normalize module already are)
    max_seq_length: int | None = None  # None keeps the model's own
    # PASSAGES=1: every document cut into windows of max_seq_length tokens (docs/PASSAGES.md), each embedded,
    # and one document vector, their token-weighted mean; False: each text truncated to its first window.
    passages: bool = False
    overlap: int | None = None  # OVERLAP=: tokens shared by consecutive windows; None: window // 8

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("No model given. Pass MODEL=<hub name or local folder>.")
        if self.prompt_name and self.prompt is not None:
            raise ConfigError("Give a prompt name (PROMPT_NAME) or a literal prompt (PROMPT), not both.")
        if self.max_seq_length is not None and self.max_seq_length < 1:
            raise ConfigError(f"MAX_SEQ_LENGTH must be at least 1, got {self.max_seq_length}.")
        if self.overlap is not None and not self.passages:
            raise ConfigError(
                f"OVERLAP={self.overlap} sets the overlap of passages; add PASSAGES=1 to cut documents into "
                "passages, or leave OVERLAP out."
            )
        if self.passages and self.max_seq_length is not None:
            self.passage_overlap(self.max_seq_length)  # refused now where the window is already known

    def passage_overlap(self, window: int) -> int | None:
        """The overlap in tokens of windows of ``window`` tokens (None without PASSAGES).

        Raises:
            ConfigError: OVERLAP outside [0, (window - 2) / 2).
        """
        if not self.passages:
            return None
        overlap = window // DEFAULT_OVERLAP_SHARE if self.overlap is None else self.overlap
        # Under half the text a window holds: the window less (at least) 2 special tokens. A prompt takes
        # more; the task's collator refuses an overlap its prompt leaves no room for (embedder.passagefeed).
        if not 0 <= 2 * overlap < window - 2:
            raise ConfigError(
                f"OVERLAP={overlap} tokens: windows of {window} tokens take an overlap from 0 to "
                f"{max(window - 3, 0) // 2} (under half the window less its special tokens); the default "
                f"is {window // DEFAULT_OVERLAP_SHARE} (a window / {DEFAULT_OVERLAP_SHARE})."
            )
        return overlap

    @property
    def model_is_local(self) -> bool:
        return Path(self.model).expanduser().is_dir()


@dataclass(frozen=True)
class ComputeSettings:
    """How vectors are computed: may change on any re-submit; each shard records what it used."""

    device: str = "auto"  # auto: cuda, then mps, then cpu
    compute_dtype: str | None = None  # None: the device's default; non-finite rows are redone in float32
    max_tokens_per_batch: int | None = None  # rows x longest row per forward pass; None: by device
    flush_rows: int = 2048  # at most this many rows between two flushes (resume and progress granularity)
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


# CSV_DELIMITER= as given -> the separator (a tab also as "tab" or a backslash and t)
CSV_DELIMITERS = {",": ",", ";": ";", "|": "|", "\t": "\t", "tab": "\t", "\\t": "\t"}


@dataclass(frozen=True)
class CorpusOptions:
    """How records become the rows to embed (Make: TEXT_FIELDS, ID_FIELD, TITLE_FIELD, URL_FIELD, TOPIC_FIELD,
    SKIP_BAD_ROWS, CSV_DELIMITER)."""

    text_fields: tuple[str, ...] = ("text",)  # joined with a blank line, e.g. ("title", "text")
    skip_bad_rows: bool = False  # False: refuse the corpus; True: embed the rest, list the others
    id_field: str = "id"  # the field holding each row's id; "@row" numbers the rows 0, 1, ...
    title_field: str = "title"  # copied to /titles ("" where absent; "-": no title column, all "")
    url_field: str = "url"  # copied to /urls ("" where absent; "-": no url column, all "")
    topic_field: str = "topic"  # copied to /topics when any row has one (colours and names the map)
    csv_delimiter: str | None = None  # CSV/TSV: the field separator; None: from the header line (, ; tab |)

    def __post_init__(self) -> None:
        if self.csv_delimiter is not None:
            if self.csv_delimiter not in CSV_DELIMITERS:
                raise ConfigError(
                    f"Unknown CSV_DELIMITER {self.csv_delimiter!r}. Choose from: ',' ';' '|' tab "
                    "(or leave it out: the header line tells)."
                )
            object.__setattr__(self, "csv_delimiter", CSV_DELIMITERS[self.csv_delimiter])

    def columns(self) -> tuple[str, ...]:
        """Every field a reader must supply."""
        ids = () if self.id_field == ROW_IDS else (self.id_field,)
        return tuple(
            dict.fromkeys((*ids, *self.text_fields, self.title_field, self.url_field, self.topic_field))
        )
