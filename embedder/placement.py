"""Where the kept rows of a corpus lie, for the index: in the source parquet, or in the run's own.

A parquet source is read in place (``InPlace``): prepare writes no text, and the index records
only the source rows it left out (a kept row's place follows from them). Any other source (JSONL,
CSV, pickle, ...) is converted once, streaming, into ``<run>/corpus-rows-<token>.parquet`` (zstd;
``Converted``) holding the kept rows, read the same way. Tasks, the merge and the map then read
rows through kit.corpusfile alone.
"""

from __future__ import annotations

import contextlib
import secrets
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedder.readers import Batch
from embedder.rowcheck import CorpusOptions, Kept
from kit import atomic, corpussource
from kit.corpusfile import Columns
from kit.corpussource import SourceFile
from kit.format import CONVERTED_COLUMNS, CONVERTED_PREFIX

FIELD_KEYS = ("ids", "texts", "titles", "urls", "topics")  # Kept.encoded's keys, in CONVERTED_COLUMNS' order
ROW_GROUP_ROWS = 1 << 16
ROW_GROUP_BYTES = 32 << 20  # of text: a task reading a few rows reads at most this much more
COMPRESSION_LEVEL = 1  # zstd's fastest: the text still shrinks ~3x; higher levels cost more than the read
WRITE_OPTIONS = {
    "compression": "zstd",
    "compression_level": COMPRESSION_LEVEL,
    "use_dictionary": False,
    "write_statistics": False,
}  # ids and texts are unique: neither pays


def _string_column(rb: pa.RecordBatch, name: str) -> pa.Array:
    """Column ``name`` as strings; nulls where the batch lacks it (read back as "")."""
    index = rb.schema.get_field_index(name)
    if index < 0 or pa.types.is_null(rb.column(index).type):
        return pa.nulls(rb.num_rows, pa.string())
    return rb.column(index).cast(pa.string())


class InPlace:
    """Rows stay in the user's parquet files; the source rows left out are the index's ``skipped``."""

    def __init__(self, files: list[Path], options: CorpusOptions):
        self.files = files
        self.columns = Columns(
            options.text_fields, options.title_field, options.url_field, options.topic_field, options.id_field
        )

    def write(self, batch: Batch, kept: Kept) -> None:
        """Nothing to write: the kept rows stay in the source files."""
        pass

    def close(self) -> None:
        """Nothing to close."""
        pass

    def read_files(self) -> list[Path]:
        """The parquet files whose rows, numbered across them, are the source rows."""
        return self.files

    def positions(self, rows: np.ndarray, rejected: np.ndarray) -> np.ndarray:
        """Rows in ``read_files`` of kept source ``rows`` (``rejected``: the source rows refused so far)."""
        return rows

    def skipped(self, rejected: np.ndarray, dropped: np.ndarray) -> np.ndarray:
        """Rows of ``read_files`` not in the corpus: every refused source row."""
        return np.union1d(rejected, dropped)

    def finish(self, folder: Path) -> list[SourceFile]:
        """The source files as the index records them, each with the row it starts at."""
        out, first = [], 0
        for path in self.files:
            out.append(corpussource.record(Path(path), first))
            first += out[-1].rows
        return out

    def discard(self) -> None:
        """Nothing to discard: the source files are the user's."""
        pass


class Converted:
    """Kept rows are written to the run's own parquet (zstd) as prepare checks them: id, text, title, url, topic."""

    columns = Columns(("text",), "title", "url", "topic", "id")

    def __init__(self, folder: Path, options: CorpusOptions):
        self.meta_fields = (options.title_field, options.url_field, options.topic_field)
        self.name = f"{CONVERTED_PREFIX}{secrets.token_hex(4)}.parquet"
        self.tmp = atomic.tmp_path(Path(folder) / self.name)
        self.schema = pa.schema([(c, pa.string()) for c in CONVERTED_COLUMNS])
        self.writer: pq.ParquetWriter | None = None
        # zstd and the write run on a thread, beside the next batches' parse and checks; one at a time
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="parquet-write")
        self._writing: Future | None = None
        self.pending: list[pa.Table] = []
        self.pending_rows = self.pending_bytes = 0
        self.closed = False

    def write(self, batch: Batch, kept: Kept) -> None:
        """Add the kept rows of ``batch`` to the parquet file, a row group at a time."""
        if kept.encoded is not None:
            # From the UTF-8 bytes the check made: 4x faster than from str (the cast validates UTF-8).
            values = [pa.array(kept.encoded[key], pa.binary()).cast(pa.string()) for key in FIELD_KEYS]
        else:  # checked in bulk: every row of the Arrow batch is kept
            assert kept.ids is not None and kept.text is not None  # the bulk check always sets both
            values = [
                kept.ids.cast(pa.string()),
                kept.text.cast(pa.string()),
                *(_string_column(batch.arrow, name) for name in self.meta_fields),
            ]
        table = pa.Table.from_arrays(values, schema=self.schema)
        self.pending.append(table)
        self.pending_rows, self.pending_bytes = (
            self.pending_rows + len(kept.rows),
            self.pending_bytes + table.nbytes,
        )
        if self.pending_rows >= ROW_GROUP_ROWS or self.pending_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        table = pa.concat_tables(self.pending)
        self.pending, self.pending_rows, self.pending_bytes = [], 0, 0
        self._wait()  # the row group before this one is written (an error in it is raised here)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, self.schema, **WRITE_OPTIONS)
        self._writing = self._pool.submit(self.writer.write_table, table, row_group_size=ROW_GROUP_ROWS)

    def _wait(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def close(self) -> None:
        """Write the last rows and the footer (the file is still under its temporary name)."""
        if self.closed:
            return
        self._flush()
        self._wait()
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, self.schema, **WRITE_OPTIONS)
        self.writer.close()
        self._pool.shutdown()
        self.closed = True

    def read_files(self) -> list[Path]:
        """The files holding the rows written so far: the temporary parquet file."""
        return [self.tmp]

    def positions(self, rows: np.ndarray, rejected: np.ndarray) -> np.ndarray:
        """Rows in the converted file of kept source ``rows``: each less the refused rows before it."""
        return rows - np.searchsorted(rejected, rows)

    def skipped(self, rejected: np.ndarray, dropped: np.ndarray) -> np.ndarray:
        """Rows of the converted file not in the corpus: the duplicates dropped after it was written."""
        return self.positions(np.sort(dropped), rejected)

    def finish(self, folder: Path) -> list[SourceFile]:
        """Close the parquet file, move it into ``folder`` and return its record for the index."""
        self.close()
        final = Path(folder) / self.name
        atomic.commit(self.tmp, final)
        return [corpussource.record(final, 0, in_run=True)]

    def discard(self) -> None:
        """Close the writer if still open and delete the temporary file (gone once ``finish`` moved it)."""
        if not self.closed:
            with contextlib.suppress(Exception):  # the error on its way up is the one to report
                self._wait()
            with contextlib.suppress(Exception):
                if self.writer is not None:
                    self.writer.close()
            self._pool.shutdown()
        self.tmp.unlink(missing_ok=True)
