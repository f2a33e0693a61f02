"""The one source of truth for file names and HDF5 layouts (documented in docs/FORMAT.md)."""

from __future__ import annotations

import re
from pathlib import Path

import h5py

SHARD_FORMAT = "embedkit-shard/1"
CORPUS_FORMAT = "embedkit-corpus/1"
OUTPUT_FORMAT = "embedkit-embeddings/1"
MAP_FORMAT = "embedkit-map/2"

UTF8 = h5py.string_dtype("utf-8")
STORED_DTYPE = "float32"  # embeddings are always stored as float32, whatever the compute dtype

# Run folder layout.
MANIFEST = "run.json"
CORPUS_FILE = "corpus.h5"
SHARDS_DIR = "shards"
REJECTED_SHARDS_DIR = "shards/rejected"
LOGS_DIR = "logs"
OUTPUT_FILE = "embeddings.h5"
SHA256_SUFFIX = ".sha256"

# Text fields carried from the corpus to the consolidated file (UTF-8 datasets).
META_FIELDS = ("ids", "titles", "urls")
OPTIONAL_META_FIELDS = ("topics",)

_SHARD_RE = re.compile(r"^shard-(\d{5,})\.h5$")


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
