"""Find duplicate ids in memory that does not grow with the corpus.

Each kept row's id is hashed to 64 bits, a whole batch at once in numpy (tabulation hashing of
its UTF-8 bytes: no Python object per id); (hash, row) pairs are spilled to 256 bucket files by
the hash's top byte. After the last row each bucket is loaded alone (1/256 of the pairs), sorted,
and rows whose hashes collide are returned as candidates; the caller confirms them on the real
ids (a collision of different ids is possible, only rare). 16 bytes per row go to disk, next to
the output, and are deleted afterwards; a corpus of fewer than FLUSH_ROWS rows never touches disk.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

BUCKETS = 256
FLUSH_ROWS = 1 << 18  # pairs held in memory before they are spread over the bucket files (4 MiB; a flush
# briefly needs ~4x that: 1 << 20 added ~45 MiB to the peak RSS of prepare)
PAIR = np.dtype([("hash", "<i8"), ("row", "<i8")])
POSITIONS = 256  # byte positions with their own random words (beyond, they repeat: only more candidates)
TABLE = np.random.default_rng(0x1D5).integers(0, 2**63, size=(POSITIONS, 256), dtype=np.int64) * 2 + 1
LENGTH_MIX = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15: the length goes into the hash too


def id_hashes(ids: pa.Array) -> np.ndarray:
    """A 64-bit hash of each value of a string or binary array (int64 [n]), from its bytes in bulk."""
    large = pa.types.is_large_string(ids.type) or pa.types.is_large_binary(ids.type)
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int64 if large else np.int32)
    offsets = offsets[ids.offset : ids.offset + len(ids) + 1].astype(np.int64)
    starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
    out = lengths * LENGTH_MIX
    if offsets[-1] == offsets[0]:
        return out
    data = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    at = np.arange(len(data), dtype=np.int64)
    at -= np.repeat(starts, lengths)  # the position of each byte within its value
    at %= POSITIONS
    at *= 256
    at += data
    full = lengths > 0
    out[full] ^= np.bitwise_xor.reduceat(TABLE.ravel()[at], starts[full])
    return out


class DuplicateFinder:
    """Collect ids with ``add``; ``colliding_rows`` yields groups of rows whose id hashes are equal."""

    def __init__(self, folder: Path):
        self.dir = Path(tempfile.mkdtemp(prefix=".corpus-ids-", dir=folder))
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._spilled = False
        self._files: dict[int, io.BufferedWriter] = {}  # bucket -> its file, open for appending until the end

    def __enter__(self) -> DuplicateFinder:
        return self

    def __exit__(self, *exc) -> None:
        self._close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}

    def add(self, ids: pa.Array, rows: np.ndarray) -> None:
        """Remember the ids (a string or binary array) of source rows ``rows`` (same length)."""
        pairs = np.empty(len(ids), dtype=PAIR)
        pairs["hash"] = id_hashes(ids)
        pairs["row"] = rows
        self._pending.append(pairs)
        self._pending_rows += len(ids)
        if self._pending_rows >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        pairs = np.concatenate(self._pending)
        self._pending, self._pending_rows, self._spilled = [], 0, True
        bucket = (pairs["hash"].view(np.uint64) >> np.uint64(56)).astype(np.uint8)
        order = np.argsort(bucket, kind="stable")  # a radix sort on one byte; rows stay ascending per bucket
        pairs = pairs[order]
        bounds = np.concatenate(([0], np.cumsum(np.bincount(bucket, minlength=BUCKETS))))
        for b in range(BUCKETS):
            if bounds[b] < bounds[b + 1]:
                if b not in self._files:
                    self._files[b] = open(self.dir / f"{b:03d}.bin", "ab")  # noqa: SIM115 (closed by close())
                pairs[bounds[b] : bounds[b + 1]].tofile(self._files[b])

    def colliding_rows(self) -> Iterator[np.ndarray]:
        """Sorted source rows sharing one id hash, group by group (each group has 2+ rows)."""
        if not self._spilled:  # all pairs are still in memory (< FLUSH_ROWS): no bucket files
            pairs = np.concatenate(self._pending) if self._pending else np.empty(0, dtype=PAIR)
            self._pending, self._pending_rows = [], 0
            yield from _groups(pairs)
            return
        self._flush()
        self._close()
        for path in sorted(self.dir.glob("*.bin")):
            yield from _groups(np.fromfile(path, dtype=PAIR))


def _groups(pairs: np.ndarray) -> Iterator[np.ndarray]:
    """Rows of ``pairs`` (rows ascending) whose hashes are equal, group by group, rows sorted."""
    pairs = pairs[np.argsort(pairs["hash"], kind="stable")]
    same = pairs["hash"][1:] == pairs["hash"][:-1]
    if not same.any():
        return
    edges = np.diff(np.concatenate(([False], same, [False])).astype(np.int8))
    for lo, hi in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
        yield pairs["row"][lo : hi + 1]
