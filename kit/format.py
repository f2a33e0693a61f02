"""The one source of truth for file names and HDF5 layouts (documented in docs/FORMAT.md)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import h5py
from xxhash import xxh3_128_digest

SHARD_FORMAT = "embedkit-shard/1"
CORPUS_FORMAT = "embedkit-corpus/2"  # an index: where each row lies in the source parquet, no text
CORPUS_FORMAT_V1 = "embedkit-corpus/1"  # texts copied into corpus.h5 (runs prepared before 2026-12); still read
OUTPUT_FORMAT = "embedkit-embeddings/1"
MAP_FORMAT = "embedkit-map/2"

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
SHA256_SUFFIX = ".sha256"

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

_SHARD_RE = re.compile(r"^shard-(\d{5,})\.h5$")


def content_hash(text: bytes | memoryview) -> bytes:
    """The content hash of one row: XXH3-128 of its text's UTF-8 bytes (big-endian digest, 16 bytes)."""
    return xxh3_128_digest(text)


def content_hashes(texts: Iterable[bytes]) -> list[bytes]:
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
