"""A Hugging Face ``datasets`` ``save_to_disk`` folder, or one ``.arrow`` file, read with pyarrow.

The folder holds ``state.json`` (``_data_files``: the Arrow files in order), ``dataset_info.json``
and ``data-00000-of-0000N.arrow`` files in Arrow's IPC stream format. A DatasetDict folder
(``dataset_dict.json``) holds one such folder per split: pass the split's folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from embedder.readers import Batch, field_lengths
from kit.errors import CorpusError

BATCH_ROWS = 4096


def data_files(folder: Path) -> list[Path]:
    """The Arrow files of a save_to_disk folder, in the dataset's order."""
    splits = folder / "dataset_dict.json"
    if splits.is_file():
        names = json.loads(splits.read_text(encoding="utf-8")).get("splits", [])
        raise CorpusError(
            f"{folder} is a DatasetDict with splits {', '.join(names)}; pass one split's "
            f"folder, e.g. CORPUS={folder / (names[0] if names else 'train')}"
        )
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    return [folder / entry["filename"] for entry in state["_data_files"]]


def _open_ipc(path: Path):
    source = pa.memory_map(str(path), "r")  # pages come from the file cache, counted once
    try:
        return pa.ipc.open_stream(source)
    except pa.ArrowInvalid:
        return pa.ipc.open_file(source)


def _record_batches(path: Path) -> Iterator[pa.RecordBatch]:
    reader = _open_ipc(path)
    if isinstance(reader, pa.ipc.RecordBatchFileReader):
        yield from (reader.get_batch(i) for i in range(reader.num_record_batches))
    else:
        yield from reader


class ArrowDiskReader:
    def __init__(self, path: Path, files: list[Path]):
        self.path = path
        self.files = files
        self.total_rows = self._total_rows(path)

    @staticmethod
    def _total_rows(path: Path) -> int | None:
        info = path / "dataset_info.json" if path.is_dir() else None
        if info is None or not info.is_file():
            return None
        splits = json.loads(info.read_text(encoding="utf-8")).get("splits") or {}
        counts = [s.get("num_examples") for s in splits.values()]
        return counts[0] if len(counts) == 1 and isinstance(counts[0], int) else None

    def batches(self, columns: Sequence[str]) -> Iterator[Batch]:
        for file in self.files:
            yield from self._file_batches(file, columns)

    def _file_batches(self, file: Path, columns: Sequence[str]) -> Iterator[Batch]:
        file_row, first = 0, True
        try:
            for record_batch in _record_batches(file):
                for lo in range(0, record_batch.num_rows, BATCH_ROWS):
                    rb = record_batch.slice(lo, BATCH_ROWS)
                    names = rb.schema.names
                    cols = {
                        c: rb.column(c).to_pylist() if c in names else [None] * rb.num_rows for c in columns
                    }
                    fields = (
                        field_lengths({n: rb.column(n).slice(0, 1000).to_pylist() for n in names})
                        if first
                        else None
                    )
                    yield Batch(
                        cols,
                        rb.num_rows,
                        str(file),
                        file_row,
                        valid_utf8=True,
                        fields=fields,
                        where="" if len(self.files) > 1 else None,
                    )
                    file_row, first = file_row + rb.num_rows, False
        except (pa.ArrowException, OSError) as err:
            raise CorpusError(
                f"{file}: Arrow data cannot be read after row {file_row} ({err}). "
                "Write the dataset again with save_to_disk."
            ) from err
