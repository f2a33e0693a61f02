"""A shard file: open or resume, append flushed chunks, commit atomically, read its header.

Progress lives inside ``shard-NNNNN.h5.tmp`` (``rows_done``, updated after each flushed
chunk); the final name ``shard-NNNNN.h5`` appears only after a re-open check, so it means
complete. Layout and attributes: docs/FORMAT.md.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from kit import atomic
from kit.errors import ShardError
from kit.format import SHARD_FORMAT, STORED_DTYPE, UTF8
from kit.shardfile import IDENTITY_KEYS, ShardHeader, ShardSpec, check_complete, plain_attr, read_header

log = logging.getLogger(__name__)


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
        same = all(plain_attr(h5.attrs.get(k)) == self.identity[k] for k in IDENTITY_KEYS) and (
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
        # fletcher32: a checksum per chunk, verified by HDF5 on every read (the merge's too).
        h5.create_dataset("embeddings", shape=(0, dim), maxshape=(rows, dim), dtype=STORED_DTYPE,
                          chunks=(chunk_rows, dim), fletcher32=True)
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
