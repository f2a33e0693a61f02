"""The one source of truth for file names and HDF5 layouts (documented in docs/FORMAT.md)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
from xxhash import xxh3_128_digest

SHARD_FORMAT = "embedkit-shard/1"
CORPUS_FORMAT = "embedkit-corpus/3"  # an index: costs and content hashes; ids and places come from the source
CORPUS_FORMAT_V2 = (
    "embedkit-corpus/2"  # an index that also stored ids, file and row per row (2026-12-02); still read
)
CORPUS_FORMAT_V1 = (
    "embedkit-corpus/1"  # texts copied into corpus.h5 (runs prepared before 2026-12); still read
)
OUTPUT_FORMAT = "embedkit-embeddings/1"
MAP_FORMAT = "embedkit-map/2"
REUSE_FORMAT = "embedkit-reuse/1"

UTF8 = h5py.string_dtype("utf-8")
STORED_DTYPE = "float32"  # embeddings are always stored as float32, whatever the compute dtype

# Run folder layout.
MANIFEST = "run.json"
CORPUS_FILE = "corpus.h5"
CONVERTED_PREFIX = "corpus-rows-"  # + token + ".parquet": a non-parquet source converted once (zstd)
SHARDS_DIR = "shards"
REJECTED_SHARDS_DIR = "shards/rejected"
LOGS_DIR = "logs"
OUTPUT_FILE = "embeddings.h5"
MERGE_SUMMARY_FILE = (
    "merge.json"  # what the last merge wrote (embedkit-merge-summary/1), beside embeddings.h5
)
MERGE_SUMMARY_FORMAT = "embedkit-merge-summary/1"
SHA256_SUFFIX = ".sha256"
LOCK_FILE = "run.lock"
REUSE_FILE = "reuse.h5"  # REUSE=: which rows take an earlier file's vectors (embedder/reuse.py)
FLOAT16_FILE = "embeddings.float16.h5"
CONTROLLER_LOG = "local-controllers.log"  # in LOGS_DIR: what submitit's local controllers print themselves
MAP_FILE, MAP_REDUCER_FILE = "map.h5", "map_reducer.joblib"
MAP_PAGE_FILE, MAP_PNG_FILE, MAP_SVG_FILE = "map.html", "map.png", "map.svg"

# Text fields carried from the corpus to the consolidated file (UTF-8 datasets).
META_FIELDS = ("ids", "titles", "urls")
OPTIONAL_META_FIELDS = ("topics",)

# The corpus index (corpus.h5, embedkit-corpus/2). A row's content hash is the XXH3-128 digest of the
# exact text the model is given (the joined TEXT_FIELDS, UTF-8, before truncation): about
# 20x faster than SHA-256 here, so hashing every text costs little beside reading it. It keys the
# reuse of vectors of unchanged rows; it is not a defence against crafted collisions.
CONTENT_HASH = "content_hash"
CONTENT_HASH_BYTES = 16
CONVERTED_COLUMNS = ("id", "text", "title", "url", "topic")  # the run's own parquet of a converted source
ROW_IDS = "@row"  # ID_FIELD=@row: the id of a row is its 0-based position in the source


@dataclass(frozen=True)
class RunPaths:
    """Every file of one run folder, named in one place (docs/FORMAT.md, "Run folder").

    A fetched folder holds only ``output`` (and its sidecar); the rest exists on the cluster side.
    """

    root: Path

    @classmethod
    def of(cls, run_dir: str | Path) -> "RunPaths":
        """The paths of ``run_dir`` (a RunPaths passes through, so callers may hold either)."""
        return run_dir if isinstance(run_dir, RunPaths) else cls(Path(run_dir))

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def corpus(self) -> Path:
        return self.root / CORPUS_FILE

    @property
    def shards(self) -> Path:
        return self.root / SHARDS_DIR

    @property
    def rejected_shards(self) -> Path:
        return self.root / REJECTED_SHARDS_DIR

    @property
    def logs(self) -> Path:
        return self.root / LOGS_DIR

    @property
    def controller_log(self) -> Path:
        return self.logs / CONTROLLER_LOG

    @property
    def output(self) -> Path:
        return self.root / OUTPUT_FILE

    @property
    def output_sidecar(self) -> Path:
        return sidecar_path(self.output)

    @property
    def merge_summary(self) -> Path:
        return self.root / MERGE_SUMMARY_FILE

    @property
    def float16_output(self) -> Path:
        return self.root / FLOAT16_FILE

    @property
    def reuse(self) -> Path:
        """``reuse.h5``: per row, the earlier file's row whose vector it takes (REUSE=), or -1."""
        return self.root / REUSE_FILE

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def map(self) -> Path:
        return self.root / MAP_FILE

    @property
    def map_reducer(self) -> Path:
        return self.root / MAP_REDUCER_FILE

    @property
    def map_page(self) -> Path:
        return self.root / MAP_PAGE_FILE

    @property
    def map_png(self) -> Path:
        return self.root / MAP_PNG_FILE

    @property
    def map_svg(self) -> Path:
        return self.root / MAP_SVG_FILE

    def shard(self, index: int) -> Path:
        """The final file of shard ``index``; it exists only once the shard is complete."""
        return self.shards / shard_name(index)

    def converted_source(self, token: str) -> Path:
        """The run's own parquet of a non-parquet source (``corpus-rows-TOKEN.parquet``)."""
        return self.root / f"{CONVERTED_PREFIX}{token}.parquet"


_SHARD_RE = re.compile(r"^shard-(\d{5,})\.h5$")


def content_hash(text: bytes | memoryview) -> bytes:
    """The content hash of one row: XXH3-128 of its text's UTF-8 bytes (big-endian digest, 16 bytes)."""
    return xxh3_128_digest(text)


def content_hashes(texts: Iterable[bytes | memoryview]) -> list[bytes]:
    """``content_hash`` of each text, in one C-level loop."""
    return list(map(xxh3_128_digest, texts))


def shard_name(index: int) -> str:
    """``shard-00007.h5``: zero-padded so a directory listing sorts."""
    return f"shard-{index:05d}.h5"


def shard_index(path: Path) -> int | None:
    """The index in a final shard file name, or None for any other name."""
    match = _SHARD_RE.match(path.name)
    return int(match.group(1)) if match else None


def sidecar_path(path: Path) -> Path:
    """``embeddings.h5.sha256`` beside ``embeddings.h5``: its SHA-256 in ``sha256sum -c`` format."""
    return path.with_name(path.name + SHA256_SUFFIX)


def sidecar_text(digest: str, path: Path) -> str:
    """The ``sha256sum`` line for ``path``, so ``sha256sum -c`` checks it too."""
    return f"{digest}  {path.name}\n"


def parse_sidecar(text: str) -> tuple[str, str]:
    """(digest, file name) from a ``sha256sum`` line."""
    digest, _, name = text.strip().partition("  ")
    if len(digest) != 64 or not name:
        raise ValueError(f"not a sha256sum line: {text[:80]!r}")
    return digest, name
