"""Parquet: a file, a folder of files or a glob; read row group by row group, only the needed columns.

Wikipedia from the Hugging Face hub (``wikimedia/wikipedia``) is 41 such files with columns
id, url, title, text: the default field names read it as is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from embedder.readers import SAMPLE_ROWS, Batch, field_lengths
from kit.errors import CorpusError

BATCH_BYTES = 4 << 20  # text per batch: bounds memory whatever the row group size (4 MiB: ~205 MiB peak)
READ_BUFFER_BYTES = 1 << 20


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, buffer_size=READ_BUFFER_BYTES, pre_buffer=False)
    except (pa.ArrowException, OSError) as err:
        raise CorpusError(
            f"{path} is not a readable parquet file ({err}). Download or write it again."
        ) from err


def _mean_bytes(meta: pq.FileMetaData, column: int) -> float:
    size = sum(meta.row_group(g).column(column).total_uncompressed_size for g in range(meta.num_row_groups))
    return size / max(meta.num_rows, 1)


class ArrowColumns(dict):
    """A batch's columns as Python lists, made on first use (most batches are checked in Arrow)."""

    def __init__(self, rb: pa.RecordBatch, file: Path, group: int):
        super().__init__()
        self.rb, self.file, self.group = rb, file, group

    def __missing__(self, name: str) -> list:
        try:
            values = (
                self.rb.column(name).to_pylist()
                if name in self.rb.schema.names
                else [None] * self.rb.num_rows
            )
        except (pa.ArrowException, UnicodeDecodeError) as err:
            raise CorpusError(
                f"{self.file}: row group {self.group} cannot be read ({err}). "
                "The file is damaged: download or write it again."
            ) from err
        self[name] = values
        return values


class ParquetReader:
    def __init__(self, path: Path, files: list[Path]):
        self.path = path
        self.files = files
        self.total_rows = sum(_open(f).metadata.num_rows for f in files)

    def batches(self, columns: Sequence[str]) -> Iterator[Batch]:
        for file in self.files:
            yield from self._file_batches(file, columns)

    def _file_batches(self, file: Path, columns: Sequence[str]) -> Iterator[Batch]:
        pf = _open(file)
        schema = pf.schema_arrow
        fields: dict[str, float] | None = self._fields(pf)  # given with the file's first batch only
        read = [c for c in dict.fromkeys(columns) if c in schema.names]
        row_bytes = sum(_mean_bytes(pf.metadata, schema.get_field_index(c)) for c in read) or 1.0
        batch_rows = int(min(65536, max(64, BATCH_BYTES // row_bytes)))
        file_row = 0
        for group in range(pf.num_row_groups):
            try:
                for rb in pf.iter_batches(
                    batch_size=batch_rows, row_groups=[group], columns=read, use_threads=False
                ):
                    yield Batch(
                        ArrowColumns(rb, file, group),
                        rb.num_rows,
                        str(file),
                        file_row,
                        valid_utf8=True,
                        fields=fields,
                        where=f", row group {group}",
                        arrow=rb,
                    )
                    file_row += rb.num_rows
                    fields = None
            except (pa.ArrowException, OSError, UnicodeDecodeError) as err:
                raise CorpusError(
                    f"{file}: row group {group} cannot be read ({err}). "
                    "The file is damaged: download or write it again."
                ) from err

    @staticmethod
    def _fields(pf: pq.ParquetFile) -> dict[str, float]:
        """Every column with its mean text length over the first rows (named when a field is missing)."""
        if pf.metadata.num_rows == 0:
            return {name: -1.0 for name in pf.schema_arrow.names}
        head = next(pf.iter_batches(batch_size=SAMPLE_ROWS, row_groups=[0], use_threads=False))
        return field_lengths({name: head.column(name).to_pylist() for name in head.schema.names})
