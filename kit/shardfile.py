"""The shard vocabulary shared by embedder, merge and knowledgemap: what a shard is and says.

``ShardSpec`` (rows of the plan), ``ShardIdentity`` (what the vectors are: every shard of a run
shares it and run.json pins it), the header read without the data, block checks, and the one
answer to "which shards are done" (the final file exists: completion is a file). Layout:
docs/FORMAT.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterable, Mapping

import h5py
import numpy as np
import xxhash

from kit import atomic
from kit.errors import ShardError
from kit.format import PROVENANCE_PREFIX, SHARD_FORMAT, STORED_DTYPE, RunPaths, shard_index
from kit.h5files import open_h5


@dataclass(frozen=True)
class ShardSpec:
    """Rows ``[start, stop)`` of the prepared corpus, written to ``shards/shard-<index>.h5``."""

    index: int  # position in the plan; names the file
    start: int  # first row, inclusive
    stop: int  # last row, exclusive

    @property
    def rows(self) -> int:
        """Rows the shard covers: ``stop - start``."""
        return self.stop - self.start

    def describe(self) -> str:
        """``shard 00003 rows [300, 400)``, as log lines and errors name a shard."""
        return f"shard {self.index:05d} rows [{self.start}, {self.stop})"


def shard_path(run_dir: Path, index: int) -> Path:
    """The final file of shard ``index`` of a run folder; it exists only once the shard is complete."""
    return RunPaths.of(run_dir).shard(index)


def done_shards(run_dir: Path) -> set[int]:
    """Indices of the shards of ``run_dir`` that are complete: the one place that decides it.

    A shard is done when its final file exists (written as ``.tmp`` and renamed after a re-open
    check). The merge still verifies every file's contents before it trusts one.
    """
    return {i for p in RunPaths.of(run_dir).shards.glob("shard-*.h5") if (i := shard_index(p)) is not None}


def set_aside_files(run_dir: Path) -> list[Path]:
    """Partial shard files a task could not trust and kept aside (named in make status)."""
    return sorted(RunPaths.of(run_dir).shards.glob(f"shard-*.h5{atomic.TMP_SUFFIX}{SET_ASIDE_MARK}*"))


def plain_attr(value: Any) -> Any:
    """An HDF5 attribute value as plain Python (JSON-ready): numpy scalars as Python numbers, arrays as
    lists, bytes as ``str``."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


@dataclass(frozen=True)
class ShardIdentity:
    """What a shard's vectors are, besides their rows: every shard of a run shares it.

    The one spelling of it: shard attributes (same names), run.json's ``pinned`` (fixed at submit,
    where ``dim`` and ``pooling`` are not known yet: None there means "not pinned") and the
    ``provenance_*`` attributes of embeddings.h5, from which the map rebuilds the encoder.
    """

    model: str  # hub name or local folder, as run.json names it
    model_revision: str | None = None  # hub commit, or "local" for a folder
    model_fingerprint: str | None = None  # SHA-256 of the weight files, computed once at submit
    dim: int | None = None
    dtype: str = STORED_DTYPE  # as stored (always float32, whatever the compute dtype)
    pooling: str | None = None  # the modules after the transformer (pooling, Normalize, Dense)
    normalize_embeddings: bool = False  # L2-normalised by the kit (a Normalize module is in pooling)
    prompt: str | None = None  # the literal text prepended to every text ("" for none)
    max_seq_length: int | None = None  # tokens kept per text (PASSAGES=1: per window, special ones counted)
    corpus_fingerprint: str | None = None
    passage_window: int | None = None  # PASSAGES=1: tokens per passage (max_seq_length); None: plain mode
    passage_overlap: int | None = None  # PASSAGES=1: tokens shared by consecutive passages (OVERLAP)

    def to_attrs(self, prefix: str = "") -> dict[str, Any]:
        """HDF5 attributes (``prefix`` + field name); None values are left out (HDF5 has no None)."""
        return {prefix + k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], prefix: str = "") -> ShardIdentity:
        """The identity in HDF5 attributes (or run.json's dict); a missing key reads as None (not pinned)."""

        def get(name: str) -> Any:
            value = plain_attr(attrs.get(prefix + name))
            return plain_attr(attrs.get(name)) if value is None and name == "model" else value

        raw = {f.name: get(f.name) for f in fields(cls)}
        for name in ("dim", "max_seq_length", "passage_window", "passage_overlap"):
            raw[name] = None if raw[name] is None else int(raw[name])
        normalize = raw["normalize_embeddings"]
        raw["normalize_embeddings"] = (
            str(normalize).lower() in ("true", "1") if normalize is not None else False
        )
        raw["dtype"] = raw["dtype"] or STORED_DTYPE
        return cls(**raw)

    def differences(
        self, other: ShardIdentity, keys: Iterable[str] | None = None
    ) -> dict[str, tuple[Any, Any]]:
        """Field -> (this value, ``other``'s) where this identity pins a value and ``other`` has another.

        The one comparison of identities: the merge (shards against run.json's pin), REUSE (an earlier
        file against this run) and search (an index against its file). ``keys``: only these fields.
        """
        mine, theirs = asdict(self), asdict(other)
        wanted = mine.keys() if keys is None else keys
        return {k: (mine[k], theirs[k]) for k in wanted if mine[k] is not None and mine[k] != theirs[k]}


def output_identity(attrs: Mapping[str, Any]) -> ShardIdentity:
    """The identity a merged file records: its ``provenance_*`` attributes (and ``model``)."""
    return ShardIdentity.from_attrs(attrs, prefix=PROVENANCE_PREFIX)


def read_output_identity(path: Path) -> ShardIdentity:
    """``output_identity`` of the merged file at ``path``: enough to rebuild its encoder."""
    with open_h5(path) as h5:
        return output_identity(h5.attrs)


COMMIT_ID = "commit_id"  # a shard attribute, new at each commit: which commit of a shard a merge took
IDENTITY_KEYS = tuple(f.name for f in fields(ShardIdentity))  # shard attributes every shard must share
SCAN_BLOCK_BYTES = 16 << 20
SET_ASIDE_MARK = ".set-aside-"  # shard-00003.h5.tmp.set-aside-<unix time>: a partial file kept, not resumed


@dataclass(frozen=True)
class ShardHeader:
    """What a shard file says about itself, without reading its data."""

    path: Path
    start: int
    stop: int
    rows: int  # rows the embeddings dataset holds
    rows_done: int  # rows flushed and counted
    complete: bool  # the file has its final name
    identity: ShardIdentity
    attrs: dict[str, Any]  # every attribute, for provenance


def read_header(path: Path) -> ShardHeader:
    """Read a shard's attributes and shapes.

    Raises:
        ShardError: the file cannot be opened or is not a shard.
    """
    try:
        with open_h5(path) as h5:
            attrs = {k: plain_attr(v) for k, v in h5.attrs.items()}
            rows = h5["embeddings"].shape[0] if "embeddings" in h5 else 0
    except (OSError, KeyError) as err:
        raise ShardError(f"Cannot read shard {path}: {err}. Delete it and re-run to recompute it.") from err
    if attrs.get("format") != SHARD_FORMAT:
        raise ShardError(f"{path} is not a shard file (format {attrs.get('format')!r}).")
    return ShardHeader(
        path=path,
        start=int(attrs["start"]),
        stop=int(attrs["stop"]),
        rows=int(rows),
        rows_done=int(attrs.get("rows_done", 0)),
        complete=not path.name.endswith(atomic.TMP_SUFFIX),
        identity=ShardIdentity.from_attrs(attrs),
        attrs=attrs,
    )


def block_problems(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows with NaN/Inf, rows that are all zero) of a float array [n, dim], as indices."""
    nonfinite = np.flatnonzero(~np.isfinite(block).all(axis=1))
    zero = np.flatnonzero(~block.any(axis=1))
    return nonfinite, zero


def describe_rows(first_row: int, rows: np.ndarray) -> str:
    """``rows [12, 40) (28 rows)`` for a sorted index array offset by ``first_row``."""
    lo, hi = first_row + int(rows[0]), first_row + int(rows[-1]) + 1
    return f"rows [{lo}, {hi}) ({len(rows)} rows)"


CHECKSUM = "xxh3_64"  # one digest per chunk of rows, in the "checksums" dataset (docs/FORMAT.md)


def digest(rows: np.ndarray) -> int:
    """xxh3_64 of a C-contiguous block of rows: one more pass over memory the merge has just read."""
    # numpy's stubs do not declare the buffer protocol that an ndarray has (xxhash reads it directly)
    return xxhash.xxh3_64_intdigest(np.ascontiguousarray(rows))  # type: ignore[arg-type]


@dataclass(frozen=True)
class BlockSums:
    """A shard's checksums: ``digests[c]`` covers rows ``[c * rows, (c + 1) * rows)`` (fewer at the end)."""

    rows: int  # rows per checksummed block (the HDF5 chunk)
    digests: np.ndarray  # uint64 [n_blocks]

    def step(self, wanted_rows: int) -> int:
        """A read size of about ``wanted_rows`` that is a whole number of blocks."""
        return max(self.rows, wanted_rows - wanted_rows % self.rows)


def block_sums(h5: h5py.File) -> BlockSums | None:
    """The shard's checksums, or None for a shard written before shards carried them."""
    if "checksums" not in h5:
        return None
    return BlockSums(int(h5.attrs["checksum_rows"]), h5["checksums"][:])


def verify_rows(
    block: np.ndarray,
    lo: int,
    sums: BlockSums | None,
    label: str,
    first_row: int,
    error: Callable[[str], Exception] = ShardError,
) -> None:
    """Check rows ``[lo, lo + len(block))`` (``lo`` on a block boundary) against their digests.

    Raises:
        error: naming ``label`` (the shard file) and the corpus rows (``first_row`` + offset) that fail.
    """
    if sums is None:
        return
    bad = []
    for a in range(0, len(block), sums.rows):
        part, c = block[a : a + sums.rows], (lo + a) // sums.rows
        if c >= len(sums.digests) or digest(part) != int(sums.digests[c]):
            bad.append((lo + a, lo + a + len(part)))
    if bad:
        rows = ", ".join(f"[{first_row + a}, {first_row + b})" for a, b in bad)
        raise error(
            f"{label} rows {rows} fail their checksum: the file's bytes changed on disk after the "
            "task wrote them."
        )


def read_rows(
    emb: h5py.Dataset,
    out: np.ndarray,
    lo: int,
    label: str,
    first_row: int,
    error: Callable[[str], Exception] = ShardError,
) -> None:
    """Read rows ``[lo, lo + len(out))`` of a shard's embeddings into ``out``; an I/O error names the rows.

    Callers check values (NaN, zero rows: the more specific message) and then ``verify_rows``.
    """
    try:
        emb.read_direct(out, np.s_[lo : lo + len(out)])
    except OSError as err:
        raise error(
            f"{label} rows [{first_row + lo}, {first_row + lo + len(out)}) cannot be read ({err})."
        ) from err


def check_complete(path: Path) -> ShardHeader:
    """Re-open ``path`` and prove it complete: shape, ``rows_done``, ids, finite, no zero rows.

    Raises:
        ShardError: naming the shard, the rows and what to do.
    """
    header = read_header(path)
    expected = header.stop - header.start
    label = f"{path.name} rows [{header.start}, {header.stop})"
    if header.rows != expected or header.rows_done != expected:
        raise ShardError(
            f"{label}: holds {header.rows} rows, rows_done={header.rows_done}, expected {expected}."
        )
    with open_h5(path) as h5:
        emb, ids = h5["embeddings"], h5["ids"]
        if emb.shape[1] != header.identity.dim or ids.shape[0] != expected:
            raise ShardError(
                f"{label}: embeddings {emb.shape} / ids {ids.shape} do not match dim {header.identity.dim}."
            )
        sums = block_sums(h5)
        step = max(1, SCAN_BLOCK_BYTES // (4 * emb.shape[1]))
        step = sums.step(step) if sums else step
        buf = np.empty((min(step, expected), emb.shape[1]), dtype=emb.dtype)
        for lo in range(0, expected, step):
            block = buf[: min(step, expected - lo)]
            read_rows(emb, block, lo, path.name, header.start)
            nonfinite, zero = block_problems(block)
            for what, rows in (("non-finite values", nonfinite), ("all-zero rows", zero)):
                if len(rows):
                    raise ShardError(f"{label}: {what} at {describe_rows(header.start + lo, rows)}.")
            verify_rows(block, lo, sums, path.name, header.start)
    return header
