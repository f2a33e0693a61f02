"""A shard file: open or resume, append flushed chunks, commit atomically, read its header.

Progress lives inside ``shard-NNNNN.h5.tmp`` (``rows_done``, updated after each flushed
chunk); the final name ``shard-NNNNN.h5`` appears only after a re-open check, so it means
complete. Layout and attributes: docs/FORMAT.md.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from embedder.config import ShardSpec
from kit import atomic
from kit.errors import ShardError
from kit.format import SHARD_FORMAT, STORED_DTYPE, UTF8, shard_name

log = logging.getLogger(__name__)

# Attributes every shard of a run must share (and a resumed .tmp must match).
IDENTITY_KEYS = (
    "model", "model_revision", "model_fingerprint", "dim", "dtype", "compute_dtype", "pooling",
    "normalize_embeddings", "prompt", "max_seq_length", "corpus_fingerprint",
)
SCAN_BLOCK_BYTES = 16 << 20


@dataclass(frozen=True)
class ShardHeader:
    """What a shard file says about itself, without reading its data."""

    path: Path
    start: int
    stop: int
    rows: int  # rows the embeddings dataset holds
    rows_done: int  # rows flushed and counted
    complete: bool  # the file has its final name
    identity: dict[str, Any]  # IDENTITY_KEYS -> value
    attrs: dict[str, Any]  # every attribute, for provenance


def final_path(shards_dir: Path, spec: ShardSpec) -> Path:
    return shards_dir / shard_name(spec.index)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


def read_header(path: Path) -> ShardHeader:
    """Read a shard's attributes and shapes.

    Raises:
        ShardError: the file cannot be opened or is not a shard.
    """
    try:
        with h5py.File(path, "r", locking=False) as h5:
            attrs = {k: _plain(v) for k, v in h5.attrs.items()}
            rows = h5["embeddings"].shape[0] if "embeddings" in h5 else 0
    except (OSError, KeyError) as err:
        raise ShardError(f"Cannot read shard {path}: {err}. Delete it and re-run to recompute it.") from err
    if attrs.get("format") != SHARD_FORMAT:
        raise ShardError(f"{path} is not a shard file (format {attrs.get('format')!r}).")
    return ShardHeader(
        path=path, start=int(attrs["start"]), stop=int(attrs["stop"]), rows=int(rows),
        rows_done=int(attrs.get("rows_done", 0)), complete=not path.name.endswith(atomic.TMP_SUFFIX),
        identity={k: attrs.get(k) for k in IDENTITY_KEYS}, attrs=attrs,
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


def check_complete(path: Path) -> ShardHeader:
    """Re-open ``path`` and prove it complete: shape, ``rows_done``, ids, finite, no zero rows.

    Raises:
        ShardError: naming the shard, the rows and what to do.
    """
    header = read_header(path)
    expected = header.stop - header.start
    label = f"{path.name} rows [{header.start}, {header.stop})"
    if header.rows != expected or header.rows_done != expected:
        raise ShardError(f"{label}: holds {header.rows} rows, rows_done={header.rows_done}, expected {expected}.")
    with h5py.File(path, "r", locking=False) as h5:
        emb, ids = h5["embeddings"], h5["ids"]
        if emb.shape[1] != header.identity["dim"] or ids.shape[0] != expected:
            raise ShardError(f"{label}: embeddings {emb.shape} / ids {ids.shape} do not match dim {header.identity['dim']}.")
        step = max(1, SCAN_BLOCK_BYTES // (4 * emb.shape[1]))
        for lo in range(0, expected, step):
            nonfinite, zero = block_problems(emb[lo : lo + step])
            for what, rows in (("non-finite values", nonfinite), ("all-zero rows", zero)):
                if len(rows):
                    raise ShardError(f"{label}: {what} at {describe_rows(header.start + lo, rows)}.")
    return header


class ShardWriter:
    """Writes one shard: resumes its ``.tmp``, appends chunks, commits under the final name."""

    def __init__(self, path: Path, spec: ShardSpec, identity: dict[str, Any], provenance: dict[str, Any]):
        self.path, self.spec, self.identity = path, spec, identity
        self.tmp = atomic.tmp_path(path)
        self.resumed_from = 0
        self.h5 = self._open_or_resume(provenance)

    @property
    def rows_done(self) -> int:
        return int(self.h5.attrs["rows_done"])

    def _open_or_resume(self, provenance: dict[str, Any]) -> h5py.File:
        if self.tmp.exists():
            h5 = self._try_resume()
            if h5 is not None:
                return h5
        return self._create(provenance)

    def _try_resume(self) -> h5py.File | None:
        try:
            h5 = h5py.File(self.tmp, "a")
        except OSError as err:  # killed mid-metadata-write: the file is unreadable
            return self._set_aside(f"unreadable ({err})")
        same = all(_plain(h5.attrs.get(k)) == self.identity[k] for k in IDENTITY_KEYS) and (
            int(h5.attrs["start"]), int(h5.attrs["stop"])) == (self.spec.start, self.spec.stop)
        if not same:
            h5.close()
            return self._set_aside("written with another model, corpus or range")
        done = int(h5.attrs["rows_done"])
        for name in ("embeddings", "ids"):  # drop rows written after the last counted flush
            h5[name].resize(done, axis=0)
        h5.attrs["attempts"] = int(h5.attrs.get("attempts", 1)) + 1
        self.resumed_from = done
        log.info("%s: resuming at row %d of %d", self.spec.describe(), self.spec.start + done, self.spec.stop)
        return h5

    def _set_aside(self, why: str) -> None:
        aside = self.tmp.with_name(f"{self.tmp.name}.set-aside-{int(time.time())}")
        self.tmp.rename(aside)
        log.warning("%s: previous partial file %s; kept as %s, starting over", self.spec.describe(), why, aside.name)
        return None

    def _create(self, provenance: dict[str, Any]) -> h5py.File:
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        h5 = h5py.File(self.tmp, "w")
        dim, rows = int(self.identity["dim"]), self.spec.rows
        chunk_rows = max(1, min(rows, (1 << 20) // (4 * dim)))
        h5.create_dataset("embeddings", shape=(0, dim), maxshape=(rows, dim), dtype=STORED_DTYPE,
                          chunks=(chunk_rows, dim))
        h5.create_dataset("ids", shape=(0,), maxshape=(rows,), dtype=UTF8, chunks=(max(1, min(rows, 4096)),))
        h5.attrs.update(format=SHARD_FORMAT, start=self.spec.start, stop=self.spec.stop, rows_done=0,
                        attempts=1, **self.identity, **provenance)
        h5.flush()
        return h5

    def append(self, embeddings: np.ndarray, ids: list[str]) -> None:
        """Append rows, flush, then count them in ``rows_done`` and flush again."""
        done, n = self.rows_done, len(ids)
        if done + n > self.spec.rows or embeddings.shape != (n, self.identity["dim"]):
            raise ShardError(f"{self.spec.describe()}: cannot append {embeddings.shape} at row {done}.")
        for name, values in (("embeddings", embeddings), ("ids", np.array(ids, dtype=object))):
            self.h5[name].resize(done + n, axis=0)
            self.h5[name][done:] = values
        self.h5.flush()
        self.h5.attrs["rows_done"] = done + n
        self.h5.flush()

    def commit(self, final_attrs: dict[str, Any]) -> ShardHeader:
        """Close, re-open and check, then rename to the final name. Returns the final header."""
        self.h5.attrs.update(final_attrs)
        self.h5.close()
        check_complete(self.tmp)
        atomic.commit(self.tmp, self.path)
        return read_header(self.path)

    def close(self) -> None:
        if self.h5.id.valid:
            self.h5.close()
