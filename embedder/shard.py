"""A shard file: open or resume, append flushed chunks, commit atomically, read its header.

Progress lives inside ``shard-NNNNN.h5.tmp`` (``rows_done``, updated after each flushed
chunk); the final name ``shard-NNNNN.h5`` appears only after a re-open check, so it means
complete. Layout and attributes: docs/FORMAT.md.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from embedder.passages import ChunkPassages
from embedder.shardpassages import PassageStore
from kit import atomic
from kit.atomic import STORAGE_ERRORS, storage_cause
from kit.commands import make_command
from kit.errors import ShardError
from kit.format import SHARD_FORMAT, STORED_DTYPE, UTF8
from kit.h5files import open_h5
from kit.passagefile import Rules, check_shard, create_shard_datasets
from kit.shardfile import (
    CHECKSUM,
    SCAN_BLOCK_BYTES,
    SET_ASIDE_MARK,
    ShardHeader,
    ShardIdentity,
    ShardSpec,
    block_problems,
    block_sums,
    check_complete,
    digest,
    read_header,
    read_rows,
    verify_rows,
)

log = logging.getLogger(__name__)


# Errors HDF5 raised where h5py can only print them ("Exception ignored in: ObjectID.__dealloc__"):
# a chunk written to disk as an object is freed, e.g. evicted onto a full disk. Without this the
# write would fail silently and its rows would be counted. Recorded, not printed.
SWALLOWED: list[BaseException] = []


def record_swallowed_hdf5_errors() -> None:
    """Install (once) the hook that records h5py's unraisable storage errors in ``SWALLOWED``."""
    previous = sys.unraisablehook
    if getattr(previous, "records_hdf5", False):
        return

    def hook(unraisable) -> None:
        if str(unraisable.object).startswith("h5py.") and isinstance(unraisable.exc_value, STORAGE_ERRORS):
            SWALLOWED.append(unraisable.exc_value)
        else:
            previous(unraisable)

    hook.records_hdf5 = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def raise_swallowed(seen: int) -> None:
    """Raise the first storage error h5py swallowed since ``len(SWALLOWED)`` was ``seen``."""
    if len(SWALLOWED) > seen:
        raise SWALLOWED[seen]


class ShardWriter:
    """Writes one shard: resumes its ``.tmp``, appends chunks, commits under the final name."""

    def __init__(self, path: Path, spec: ShardSpec, identity: ShardIdentity, provenance: dict[str, Any]):
        if identity.dim is None:
            raise ValueError("a shard's identity needs its dimension")
        self.path, self.spec, self.identity, self.dim = path, spec, identity, identity.dim
        self.tmp = atomic.tmp_path(path)
        self.resumed_from = 0
        self.tail = np.empty((0, self.dim), dtype=STORED_DTYPE)  # rows of the chunk being filled
        # PASSAGES=1: each document's passages too (embedder/shardpassages.py); rows_done counts documents
        self.passages = PassageStore(self.tmp.name, self.dim) if identity.passage_window is not None else None
        self.rules = Rules(identity.passage_window or 0, identity.passage_overlap or 0)
        record_swallowed_hdf5_errors()
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
            h5 = open_h5(self.tmp, "a")
        except STORAGE_ERRORS as err:  # killed mid-metadata-write: the file is unreadable
            self._set_aside(f"unreadable ({err})")
            return None
        try:
            same = ShardIdentity.from_attrs(h5.attrs) == self.identity and (
                int(h5.attrs["start"]),
                int(h5.attrs["stop"]),
            ) == (self.spec.start, self.spec.stop)
            if not same:
                self._close_and_set_aside(h5, "written with another model, corpus or range")
                return None
            done = int(h5.attrs["rows_done"])
            for name in ("embeddings", "ids"):  # drop rows written after the last counted flush
                h5[name].resize(done, axis=0)
            done, self.tail = self._check_committed(h5, done)
            if self.passages is not None and (kept := self.passages.resume(h5, done)) < done:
                done, self.tail = self._cut(h5, kept)
            h5.attrs["attempts"] = int(h5.attrs.get("attempts", 1)) + 1
            h5.flush()
        except (*STORAGE_ERRORS, KeyError, ValueError, ShardError) as err:
            # A flush cut by a full disk, EIO or a kill can leave HDF5's metadata inconsistent
            # ("addr overflow" on resize): such a file cannot be trusted, so it is kept aside.
            self._close_and_set_aside(h5, f"cannot be resumed ({str(err).splitlines()[0][:200]})")
            return None
        self.resumed_from = done
        log.info("%s: resuming at row %d of %d", self.spec.describe(), self.spec.start + done, self.spec.stop)
        return h5

    def _check_committed(self, h5: h5py.File, done: int) -> tuple[int, np.ndarray]:
        """The counted rows read back against their checksums, finite and non-zero, before more are added.

        Returns the rows to resume after and those of the last, partly filled chunk (its digest grows
        with each append). A kill between the digest and ``rows_done`` reaching the disk leaves that
        chunk's digest unmatched: its rows are then recomputed (resume at the chunk's start).
        """
        emb, sums = h5["embeddings"], block_sums(h5)
        if sums is None:
            raise ShardError(f"{self.tmp.name} has no checksums (written by an older version)")
        whole = done - done % sums.rows
        step = sums.step(max(1, SCAN_BLOCK_BYTES // (4 * emb.shape[1])))
        for lo in range(0, whole, step):
            block = np.empty((min(step, whole - lo), emb.shape[1]), dtype=emb.dtype)
            read_rows(emb, block, lo, self.tmp.name, self.spec.start)
            if any(len(rows) for rows in block_problems(block)):
                raise ShardError(
                    f"{self.tmp.name}: counted rows from {self.spec.start + lo} are zero or non-finite"
                )
            verify_rows(block, lo, sums, self.tmp.name, self.spec.start)
        tail = np.empty((done - whole, emb.shape[1]), dtype=emb.dtype)
        read_rows(emb, tail, whole, self.tmp.name, self.spec.start)
        c = whole // sums.rows
        if len(tail) and (
            c >= len(sums.digests)
            or digest(tail) != int(sums.digests[c])
            or any(len(rows) for rows in block_problems(tail))
        ):
            log.warning(
                "%s: rows [%d, %d) do not match their checksum; recomputing them",
                self.spec.describe(),
                self.spec.start + whole,
                self.spec.start + done,
            )
            done, tail = whole, tail[:0]
            for name in ("embeddings", "ids"):
                h5[name].resize(done, axis=0)
            h5.attrs["rows_done"] = done
        if h5["ids"].shape[0] != done or done and not h5["ids"][done - 1]:
            raise ShardError(f"{self.tmp.name}: ids do not hold the {done} counted rows")
        h5["checksums"].resize(-(-done // sums.rows), axis=0)
        return done, tail

    def _cut(self, h5: h5py.File, done: int) -> tuple[int, np.ndarray]:
        """Keep the first ``done`` counted rows (already verified) and return them with the last block's part."""
        per = int(h5.attrs["checksum_rows"])
        for name in ("embeddings", "ids"):
            h5[name].resize(done, axis=0)
        h5["checksums"].resize(-(-done // per), axis=0)
        h5.attrs["rows_done"] = done
        tail = np.empty((done % per, self.dim), dtype=STORED_DTYPE)
        read_rows(h5["embeddings"], tail, done - len(tail), self.tmp.name, self.spec.start)
        return done, tail

    def _close_and_set_aside(self, h5: h5py.File, why: str) -> None:
        try:
            h5.close()
        except STORAGE_ERRORS as err:
            log.warning("%s: closing %s failed (%s)", self.spec.describe(), self.tmp.name, err)
        return self._set_aside(why)

    def _set_aside(self, why: str) -> None:
        aside = self.tmp.with_name(f"{self.tmp.name}{SET_ASIDE_MARK}{int(time.time())}")
        self.tmp.rename(aside)
        log.warning(
            "%s: previous partial file %s; kept as %s, starting over", self.spec.describe(), why, aside.name
        )
        return None

    def _create(self, provenance: dict[str, Any]) -> h5py.File:
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._create_file(provenance)
        except STORAGE_ERRORS as err:
            raise self._storage_error(err, "creating", 0) from err

    def _create_file(self, provenance: dict[str, Any]) -> h5py.File:
        h5 = open_h5(self.tmp, "w")
        dim, rows = self.dim, self.spec.rows
        chunk_rows = max(1, min(rows, (1 << 20) // (4 * dim)))
        # One xxh3_64 digest per chunk ("checksums"), verified by every read that trusts the rows.
        h5.create_dataset(
            "embeddings", shape=(0, dim), maxshape=(rows, dim), dtype=STORED_DTYPE, chunks=(chunk_rows, dim)
        )
        h5.create_dataset("ids", shape=(0,), maxshape=(rows,), dtype=UTF8, chunks=(max(1, min(rows, 4096)),))
        blocks = -(-rows // chunk_rows)
        h5.create_dataset(
            "checksums", shape=(0,), maxshape=(blocks,), dtype="uint64", chunks=(min(blocks, 4096),)
        )
        if self.passages is not None:
            create_shard_datasets(h5, rows, dim, max(1, (1 << 20) // (4 * dim)))
        h5.attrs.update(
            format=SHARD_FORMAT,
            start=self.spec.start,
            stop=self.spec.stop,
            rows_done=0,
            attempts=1,
            checksum=CHECKSUM,
            checksum_rows=chunk_rows,
            **self.identity.to_attrs(),
            **provenance,
        )
        h5.flush()
        return h5

    def _storage_error(self, err: BaseException, what: str, done: int) -> ShardError:
        """One message for a write that failed: the cause first (status shows it), then the way on."""
        run_dir = self.path.parent.parent
        return ShardError(
            f"{self.spec.describe()}: {storage_cause(err)} while {what} {self.tmp}. The next attempt resumes "
            f"after the {done} rows flushed before, or sets the file aside if it cannot be trusted. "
            f"Free space in {run_dir}, then: {make_command('submit', RUN=run_dir)}"
        )

    def append(self, embeddings: np.ndarray, ids: list[str], passages: ChunkPassages | None = None) -> None:
        """Append rows (and with PASSAGES=1 their passages), flush, then count them in ``rows_done`` and flush
        again."""
        done, n = self.rows_done, len(ids)
        if done + n > self.spec.rows or embeddings.shape != (n, self.dim):
            raise ShardError(f"{self.spec.describe()}: cannot append {embeddings.shape} at row {done}.")
        if (self.passages is None) != (passages is None) or passages is not None and passages.docs != n:
            raise ShardError(
                f"{self.spec.describe()}: the chunk at row {done} does not come with its passages."
            )
        seen = len(SWALLOWED)
        try:
            if self.passages is not None and passages is not None:
                self.passages.write(self.h5, passages, self.spec.start + done)
            for name, values in (("embeddings", embeddings), ("ids", np.array(ids, dtype=object))):
                self.h5[name].resize(done + n, axis=0)
                self.h5[name][done:] = values
            self.h5.flush()
            raise_swallowed(seen)  # before the rows are counted
            self._write_checksums(done, embeddings)
            if self.passages is not None and passages is not None:
                self.passages.count(self.h5, passages, done)
            self.h5.attrs["rows_done"] = done + n
            self.h5.flush()
            raise_swallowed(seen)
        except STORAGE_ERRORS as err:
            raise self._storage_error(
                err, f"flushing rows [{self.spec.start + done}, {self.spec.start + done + n}) to", done
            ) from err

    def _write_checksums(self, done: int, embeddings: np.ndarray) -> None:
        """Digests of every chunk the new rows touch; the last chunk's grows with each append."""
        per = int(self.h5.attrs["checksum_rows"])
        first = done - len(self.tail)  # the partly filled chunk starts here
        rows = np.concatenate([self.tail, embeddings.astype(STORED_DTYPE, copy=False)])
        digests = [digest(rows[a : a + per]) for a in range(0, len(rows), per)]
        sums = self.h5["checksums"]
        sums.resize(first // per + len(digests), axis=0)
        sums[first // per :] = np.array(digests, dtype=np.uint64)
        left = len(rows) % per
        self.tail = rows[len(rows) - left :].copy() if left else rows[:0].copy()

    def commit(self, final_attrs: dict[str, Any]) -> ShardHeader:
        """Close, re-open and check, then rename to the final name. Returns the final header."""
        done = self.rows_done
        try:
            self.h5.attrs.update(final_attrs)
            self.h5.close()
        except STORAGE_ERRORS as err:
            raise self._storage_error(err, "closing", done) from err
        header = check_complete(self.tmp)
        if self.passages is not None:  # PASSAGES=1: the documents' passages proven too
            with open_h5(self.tmp) as h5:
                check_shard(h5, self.tmp.name, header.start, header.stop - header.start, self.dim, self.rules)
        atomic.commit(self.tmp, self.path)
        return read_header(self.path)

    def close(self) -> None:
        """Close; after a failed write HDF5 may fail again here, which must not hide the first error."""
        if self.h5.id.valid:
            try:
                self.h5.close()
            except STORAGE_ERRORS as err:
                log.warning(
                    "%s: closing %s after an error failed too (%s)",
                    self.spec.describe(),
                    self.tmp.name,
                    str(err).splitlines()[0][:200],
                )
