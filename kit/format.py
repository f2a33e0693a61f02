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
PROVENANCE_PREFIX = "provenance_"  # embeddings.h5 attributes: the shards' identity and how they were made
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
PKL_FILE = "wikipedia_merged.pkl"  # make export-pkl: the seeds' dictionary
INDEX_FILE = "embeddings.faiss"  # make index / INDEX=1: the search index (search/indexfile.py), + .sha256
INDEX_RECORD_FILE = "embeddings.faiss.json"  # what the index indexes and how well it finds (its recall)
CONTROLLER_LOG = "local-controllers.log"  # in LOGS_DIR: what submitit's local controllers print themselves
MAP_FILE, MAP_REDUCER_FILE = "map.h5", "map_reducer.joblib"
MAP_PAGE_FILE, MAP_PNG_FILE, MAP_SVG_FILE = "map.html", "map.png", "map.svg"

EXPORT_FORMATS = ("parquet", "npy", "int8", "binary")  # make export FORMAT= and EXPORT= on make submit

# Smaller copies of embeddings.h5 for a laptop (make export FORMAT=int8|binary; search/compact.py).
INT8_FORMAT, BINARY_FORMAT = "embedkit-int8/1", "embedkit-binary/1"
INT8_FILE = "embeddings.int8.h5"  # int8 [N, D] codes of the unit rows, per-dimension ranges low/high
BINARY_FILE = "embeddings.binary.h5"  # uint8 [N, ceil(D / 64) * 8]: one bit a dimension, thresholds
COMPACT_FILES = {"int8": INT8_FILE, "binary": BINARY_FILE}
# make fetch COPY=: the smaller copies a laptop may take instead of embeddings.h5 (each with its sidecar)
FETCH_COPIES = {"float16": FLOAT16_FILE, **COMPACT_FILES}

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
    def of(cls, run_dir: str | Path) -> RunPaths:
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
    def index(self) -> Path:
        """``embeddings.faiss``: the search index of ``output`` (make index, INDEX=1)."""
        return self.root / INDEX_FILE

    @property
    def index_record(self) -> Path:
        """``embeddings.faiss.json``: what the index was built from, and its measured recall."""
        return self.root / INDEX_RECORD_FILE

    @property
    def pkl(self) -> Path:
        """``wikipedia_merged.pkl``: the seeds' dictionary (make export-pkl)."""
        return self.root / PKL_FILE

    def export(self, fmt: str, dtype: str = "float32") -> Path:
        """Where ``make export FORMAT=fmt`` writes: ``embeddings.parquet`` or ``embeddings-npy-float32/``."""
        return export_target(self.output, fmt, dtype)

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


def parquet_path(src: Path, dtype: str) -> Path:
    """``embeddings.parquet``, or ``embeddings.float16.parquet`` beside the source."""
    return src.with_name(src.stem + ("" if dtype == "float32" else f".{dtype}") + ".parquet")


def npy_folder(src: Path, dtype: str) -> Path:
    """``embeddings-npy-float32/`` (neither name is a prefix of the other: embedding-reader globs ``folder**``)."""
    return src.with_name(f"{src.stem}-npy-{dtype}")


def export_target(src: Path, fmt: str, dtype: str = "float32") -> Path:
    """The export of ``src`` (an embeddings.h5) in ``fmt`` (parquet, npy, int8 or binary) and ``dtype``."""
    if fmt in COMPACT_FILES:
        return compact_path(src, fmt)
    return (parquet_path if fmt == "parquet" else npy_folder)(src, dtype)


def compact_path(src: Path, kind: str) -> Path:
    """``embeddings.int8.h5`` or ``embeddings.binary.h5`` beside ``src`` (an embeddings.h5)."""
    return src.with_name(COMPACT_FILES[kind])


def sidecar_path(path: Path) -> Path:
    """``embeddings.h5.sha256`` beside ``embeddings.h5``: its SHA-256 in ``sha256sum -c`` format."""
    return path.with_name(path.name + SHA256_SUFFIX)


def sidecar_text(digest: str, path: Path) -> str:
    """The ``sha256sum`` line for ``path``, so ``sha256sum -c`` checks it too."""
    return f"{digest}  {path.name}\n"


def sidecar_digest(path: Path) -> str | None:
    """The SHA-256 the sidecar of ``path`` records, or None where it has none (or a damaged one)."""
    try:
        return parse_sidecar(sidecar_path(path).read_text())[0]
    except (OSError, ValueError):
        return None


def parse_sidecar(text: str) -> tuple[str, str]:
    """(digest, file name) from a ``sha256sum`` line."""
    digest, _, name = text.strip().partition("  ")
    if len(digest) != 64 or not name:
        raise ValueError(f"not a sha256sum line: {text[:80]!r}")
    return digest, name


# Every shard also embeds the run's canary texts (kit/canary.py): float32 [blocks, texts, dim].
CANARY_DATASET = "canary"


# PASSAGES=1 (docs/PASSAGES.md): beside the document vectors in `embeddings`, each document's passages,
# in a shard and in embeddings.h5 alike. Document i's passages are rows [passage_ptr[i], passage_ptr[i + 1]).
PASSAGES_GROUP = "passages"
PASSAGE_EMBEDDINGS = "passages/embeddings"  # float32 [P, D]
PASSAGE_DOCUMENT = "passages/document"  # int64 [P]: the document's row (corpus row = row of embeddings.h5)
PASSAGE_INDEX = "passages/index"  # int32 [P]: 0, 1, ... within its document
PASSAGE_SPAN = "passages/span"  # int64 [P, 2]: [start, end) characters into the document's text
PASSAGE_TOKENS = "passages/tokens"  # int32 [P]: text tokens (special and prompt tokens not counted)
PASSAGE_CHECKSUMS = "passages/checksums"  # shards: xxh3_64 per block of passage vectors, as `checksums`
PASSAGE_PTR = "passage_ptr"  # int64 [N + 1] (a shard: [rows_done + 1], numbered from its first passage)
PASSAGE_FIELDS = (PASSAGE_DOCUMENT, PASSAGE_INDEX, PASSAGE_SPAN, PASSAGE_TOKENS)  # beside the vectors
PASSAGES_EXPORT = "passages"  # make export: passages.parquet, passages-npy-float32/ beside the documents'


def passages_export_target(src: Path, fmt: str, dtype: str = "float32") -> Path:
    """Where ``make export`` writes the passages table of ``src`` (an embeddings.h5 of a PASSAGES=1 run)."""
    return export_target(src.with_name(PASSAGES_EXPORT + src.suffix), fmt, dtype)
