"""The parquet files a prepared corpus points into: recorded at prepare, checked and read by tasks.

A corpus index (``corpus.h5``) holds no text: every row lies in one of these files, at a place
that follows from the index (kit.corpusfile). This module records a file as prepare saw it (size, mtime, the
footer's SHA-256), refuses it when it changed since, and reads given rows from only the row
groups that hold them, only the columns asked for, one row group kept for the next call.

The run's own converted parquet (``in_run``) is recognised by its content alone, size and footer:
a copy of the run folder (``cp -r``, rsync without ``-t``, a move between file systems) gives it a
new modification time, and it is still the same file. A user's source file is also checked by
its modification time, since a same-size edit of a file without string statistics keeps its footer.
Layout: docs/FORMAT.md.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # Table.take needs it: imported with the module, not at the first read
import pyarrow.parquet as pq

from kit.commands import make_command
from kit.errors import CorpusError

FOOTER_TAIL_BYTES = 8  # int32 footer length + b"PAR1"


@dataclass(frozen=True)
class SourceFile:
    """One parquet file of the corpus, as prepare saw it."""

    path: str  # absolute; or a bare name inside the run folder (a converted source, ``in_run``)
    size: int  # bytes
    mtime_ns: int
    footer_sha256: str  # of the parquet footer (schema, row groups, statistics)
    rows: int  # rows in the file
    first_row: int  # source row of its first row (ID_FIELD=@row numbers rows across files)
    in_run: bool = False

    def resolve(self, run_dir: Path) -> Path:
        """Where the file is now: inside ``run_dir`` for the run's own converted copy, else as recorded."""
        return Path(run_dir) / self.path if self.in_run else Path(self.path)

    def as_dict(self) -> dict:
        """The plain dict stored in corpus.h5's attributes (JSON)."""
        return asdict(self)


def footer_sha256(path: Path) -> str:
    """SHA-256 of a parquet file's footer: changes with any rewrite of the file's data."""
    with open(path, "rb") as f:
        f.seek(-FOOTER_TAIL_BYTES, os.SEEK_END)
        tail = f.read(FOOTER_TAIL_BYTES)
        length = int.from_bytes(tail[:4], "little")
        f.seek(-(FOOTER_TAIL_BYTES + length), os.SEEK_END)
        return hashlib.sha256(f.read(length + FOOTER_TAIL_BYTES)).hexdigest()


def record(path: Path, first_row: int, in_run: bool = False) -> SourceFile:
    """Describe ``path`` (absolute unless ``in_run``) for the index header."""
    stat = path.stat()
    rows = pq.ParquetFile(path).metadata.num_rows
    name = path.name if in_run else str(path.resolve())
    return SourceFile(name, stat.st_size, stat.st_mtime_ns, footer_sha256(path), rows, first_row, in_run)


def changed(source: SourceFile, path: Path) -> str | None:
    """What differs between ``path`` now and when it was prepared, or None (``path`` exists).

    The run's own parquet is compared by content (size, footer); a user's file by its mtime too.
    """
    stat = path.stat()
    if stat.st_size != source.size:
        return f"size {source.size} -> {stat.st_size} bytes"
    if footer_sha256(path) != source.footer_sha256:
        return "its parquet footer differs: it was written again"
    if not source.in_run and stat.st_mtime_ns != source.mtime_ns:
        return "its modification time differs"  # a same-size edit keeps the footer (no string statistics)
    return None


def problem(source: SourceFile, run_dir: Path) -> str | None:
    """Why the recorded file cannot be read as prepared (missing, or changed), in words; None if it can."""
    path = source.resolve(run_dir)
    if not path.is_file():
        return "it is missing"
    return changed(source, path)


def open_checked(source: SourceFile, run_dir: Path, index: Path, corpus: str) -> SourceRows:
    """``SourceRows`` of a recorded file; refused in one line when it is missing or changed since prepare.

    Args:
        source: the file as the index records it.
        run_dir: the run folder (where the run's own parquet lies).
        index: the corpus index (``corpus.h5``) that records it.
        corpus: the CORPUS the index was prepared from (its ``source`` attribute), for the command
            that prepares the run again.

    Raises:
        CorpusError: the file is missing (a partial copy of a run folder), or differs from the record.
    """
    why = problem(source, run_dir)
    if why:
        raise CorpusError(_refusal(source, run_dir, index, corpus, why))
    return SourceRows(source.resolve(run_dir))


def _refusal(source: SourceFile, run_dir: Path, index: Path, corpus: str, why: str) -> str:
    """The one line that refuses a recorded file that is missing or changed, with the commands that repair it."""
    path = source.resolve(run_dir)
    again = make_command("submit", RUN=run_dir, CORPUS=corpus)
    same = "no shard is recomputed while the corpus's rows are the same"
    if source.in_run and why == "it is missing":
        return (
            f"Run folder {run_dir} is incomplete: {source.path}, the corpus rows that {index.name} points "
            f"to, is missing (a partial copy?). Copy it into {run_dir} from the run folder this one came "
            f"from, or prepare the corpus again from its source ({same}): {again}"
        )
    if source.in_run:
        return (
            f"{path}, the run's own copy of the rows of corpus {corpus}, is not the file {index.name} "
            f"recorded ({why}): it was damaged or replaced. Copy it again from the run folder this one "
            f"came from, or prepare the corpus again from its source ({same}): {again}"
        )
    if why == "it is missing":
        return (
            f"Source file {path} is missing: {index} was prepared from it and reads its rows there. Put it "
            f"back at that path, or prepare the run again from where it is now: "
            f"{make_command('submit', RUN=run_dir)} CORPUS=<its new place>"
        )
    return (
        f"Source file {path} changed since the corpus was prepared ({why}): the rows recorded in {index} "
        f"no longer match it. Put the original file back, or prepare the run again from the corpus as it "
        f"is now ({same}; other rows are refused until you add REDO=all): {again}"
    )


def _indices(rows: np.ndarray) -> pa.Array:
    """Row numbers as an Arrow array through its buffer (pa.array() of a list or numpy array imports pandas)."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(rows), [None, pa.py_buffer(rows)])


class SourceRows:
    """Rows of one parquet file, read by row group; the last row group read is kept."""

    def __init__(self, path: Path):
        self.path = path
        self.file = pq.ParquetFile(path, pre_buffer=False)
        sizes = [self.file.metadata.row_group(g).num_rows for g in range(self.file.num_row_groups)]
        self.starts = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
        self.names = set(self.file.schema_arrow.names)
        self._kept: tuple[int, tuple[str, ...], pa.Table] | None = None

    def groups(self, rows: np.ndarray) -> np.ndarray:
        """The row group of each of ``rows`` (rows within the file)."""
        return np.searchsorted(self.starts, rows, side="right") - 1

    def take(self, rows: np.ndarray, columns: tuple[str, ...]) -> dict[str, list | None]:
        """``columns`` at ``rows`` (ascending), as Python lists; None for a column the file lacks."""
        present = tuple(c for c in columns if c in self.names)
        groups = self.groups(rows)
        parts = []
        for g in np.unique(groups):
            table, local = self._group(int(g), present), rows[groups == g] - self.starts[g]
            contiguous = local[-1] - local[0] + 1 == len(local)  # the usual case: a slice, no copy
            parts.append(
                table.slice(int(local[0]), len(local)) if contiguous else table.take(_indices(local))
            )
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0] if parts else None
        return {
            c: table.column(c).to_pylist() if c in present and table is not None else None for c in columns
        }

    def _group(self, group: int, columns: tuple[str, ...]) -> pa.Table:
        if self._kept is None or self._kept[:2] != (group, columns):
            try:
                table = self.file.read_row_group(group, columns=list(columns), use_threads=False)
            except (pa.ArrowException, OSError) as err:
                raise CorpusError(
                    f"{self.path}: row group {group} cannot be read ({err}). "
                    "The file is damaged: download or write it again."
                ) from err
            self._kept = (group, columns, table)
        return self._kept[2]
