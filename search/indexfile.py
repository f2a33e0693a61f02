"""The index beside embeddings.h5: its files, its record, and the checks before it is trusted.

Three files, all written atomically (``.tmp``, fsync, rename; the index itself renamed last):

- ``embeddings.faiss``: the FAISS index, in FAISS's own format (``faiss.read_index`` opens it).
  Row ids are rows of embeddings.h5.
- ``embeddings.faiss.sha256``: its SHA-256, ``sha256sum -c`` format.
- ``embeddings.faiss.json`` (format ``embedkit-index/1``): what it indexes (``source``: file name,
  its SHA-256 as its sidecar says, rows, dim, dataset, the embedding identity), how it was built
  (``kind``, ``factory``, ``faiss``), how to search it (``search_parameter`` and
  ``search_value``, ``candidates_per_k``), and its measured ``recall_at_10`` against exact
  search on held-out queries (``recall_queries`` of them, perturbed rows of the file).

``open_index`` returns None where there is no index, and refuses, in one line naming the
command that rebuilds it, an index that is damaged, incomplete or built for another file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

from kit import atomic
from kit.commands import make_command
from kit.errors import ConfigError
from kit.format import parse_sidecar, sidecar_path
from kit.shardfile import ShardIdentity

INDEX_FORMAT = "embedkit-index/1"
INDEX_SUFFIX = ".faiss"  # embeddings.h5 -> embeddings.faiss
RECORD_SUFFIX = ".json"  # embeddings.faiss -> embeddings.faiss.json


class IndexMismatchError(ConfigError):
    """An index that is damaged, incomplete, or not built from the embeddings.h5 beside it."""


@dataclass(frozen=True)
class IndexRecord:
    """``embeddings.faiss.json``: what the index indexes, how to search it, how well it does."""

    index_sha256: str
    kind: str  # hnsw or ivf-pq (search.indexplan)
    factory: str  # faiss.index_factory string
    faiss: str  # faiss version that built it
    search_parameter: str  # efSearch or nprobe
    search_value: int  # tuned at build to reach target_recall on other held-out queries
    candidates_per_k: int  # rows proposed per result, rescored exactly from the source
    recall_at_10: float  # against exact search, on recall_queries held-out queries
    recall_queries: int
    target_recall: float
    build_seconds: float
    source: dict[str, Any]  # file, sha256, rows, dim, dataset, identity (provenance_* attributes)
    format: str = INDEX_FORMAT

    def describe(self) -> str:
        """``ivf-pq (IVF2048,PQ48x8np), nprobe 1, 20 candidates per result, recall@10 0.998``."""
        return (
            f"{self.kind} ({self.factory}), {self.search_parameter} {self.search_value}, "
            f"{self.candidates_per_k} candidates per result, recall@10 {self.recall_at_10:.3f}"
        )


def index_path(source: Path) -> Path:
    """``embeddings.faiss`` beside ``embeddings.h5``."""
    return source.with_suffix(INDEX_SUFFIX)


def record_path(source: Path) -> Path:
    """``embeddings.faiss.json`` beside ``embeddings.h5``."""
    index = index_path(source)
    return index.with_name(index.name + RECORD_SUFFIX)


def index_files(source: Path) -> list[Path]:
    """The index's three files (index, sidecar, record) for ``source``: what make fetch brings."""
    return [index_path(source), sidecar_path(index_path(source)), record_path(source)]


def rebuild_command(source: Path) -> str:
    """``make index RUN=<the run folder>``."""
    return make_command("index", RUN=source.parent)


def source_digest(source: Path) -> str:
    """The SHA-256 ``source``'s sidecar records (not re-hashed: make fetch and the merge checked it).

    Raises:
        ConfigError: no file, or no readable sidecar.
    """
    sidecar = sidecar_path(source)
    if not source.exists():
        raise ConfigError(
            f"{source} does not exist. Merge the run ({make_command('merge', RUN=source.parent)}) "
            "or bring it here with make fetch."
        )
    try:
        return parse_sidecar(sidecar.read_text())[0]
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"{source} has no readable {sidecar.name} ({err}): it is not a finished merge. "
            f"Run: {make_command('merge', RUN=source.parent)}"
        ) from err


def write_record(source: Path, record: IndexRecord) -> None:
    """Write ``embeddings.faiss.json`` atomically (before the index is renamed into place)."""
    atomic.write_text(record_path(source), json.dumps(asdict(record), indent=1, sort_keys=True) + "\n")


def read_record(source: Path) -> IndexRecord | None:
    """The record beside ``source``, or None where there is neither record nor index.

    Raises:
        IndexMismatchError: one of the two without the other, or a record that does not parse.
    """
    index, record = index_path(source), record_path(source)
    if not index.exists() and not record.exists():
        return None
    if not (index.exists() and record.exists()):
        missing = record if index.exists() else index
        _refuse(source, f"{index} is incomplete: {missing.name} is missing")
    try:
        data = json.loads(record.read_text())
        if data.get("format") != INDEX_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {INDEX_FORMAT}")
        return IndexRecord(**data)
    except (ValueError, TypeError) as err:
        _refuse(source, f"{record} cannot be read ({err})")


def check_record(source: Path, record: IndexRecord, identity: ShardIdentity, index_sha256: str) -> None:
    """Refuse an index that is not the one recorded, or that indexes another file than ``source``.

    Raises:
        IndexMismatchError: naming what differs and the command that rebuilds the index.
    """
    index = index_path(source)
    if index_sha256 != record.index_sha256:
        _refuse(
            source,
            f"{index} is damaged or was replaced: its SHA-256 is not the one {record_path(source).name} records",
        )
    digest = source_digest(source)
    if record.source.get("sha256") != digest:
        built_for = str(record.source.get("sha256"))[:12]
        _refuse(
            source,
            f"{index} is stale: it indexes an embeddings.h5 with SHA-256 {built_for}..., not this one ({digest[:12]}...)",
        )
    recorded = ShardIdentity.from_attrs(record.source.get("identity", {}))
    if recorded.differences(identity):
        _refuse(
            source,
            f"{index} was built for other vectors ({', '.join(recorded.differences(identity))} differ)",
        )


def _refuse(source: Path, why: str) -> NoReturn:
    raise IndexMismatchError(f"{why}. Rebuild it: {rebuild_command(source)}")
