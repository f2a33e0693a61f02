"""Which reader a source needs: from its name (suffix, folder layout, glob), else from its first bytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from embedder.readers import SUPPORTED, Reader, expand
from embedder.readers.arrowdisk import ArrowDiskReader, data_files
from embedder.readers.delimited import DelimitedReader
from embedder.readers.jsonl import JsonlReader
from embedder.readers.jsonlist import JsonListReader
from embedder.readers.parquet import ParquetReader
from embedder.readers.pickled import PickleReader
from embedder.readers.textio import GZIP_MAGIC, ZSTD_MAGIC, base_name
from kit.errors import CorpusError

PARQUET_MAGIC = b"PAR1"
ARROW_FILE_MAGIC = b"ARROW1"
ARROW_STREAM_MAGIC = b"\xff\xff\xff\xff"
PICKLE_MAGIC = b"\x80"
BY_NAME = {
    ".jsonl": JsonlReader,
    ".ndjson": JsonlReader,
    ".csv": DelimitedReader,
    ".tsv": DelimitedReader,
    ".pkl": PickleReader,
    ".pickle": PickleReader,
}


def open_reader(source: Path, csv_delimiter: str | None = None) -> Reader:
    """The reader for ``source``: from its name, else from its first bytes.

    Args:
        source: a file, a folder or a glob.
        csv_delimiter: a CSV/TSV source's field separator (CSV_DELIMITER=); None: its header line tells.

    Raises:
        CorpusError: the source does not exist, or is in no supported format.
    """
    source = Path(source)
    if source.is_dir():
        return _folder_reader(source)
    files = expand(source)
    if not files or not files[0].exists():
        what = "matches no file" if files == [] else "does not exist"
        raise CorpusError(
            f"Corpus {source} {what}. Pass CORPUS= a file, a folder or a glob; readable: {SUPPORTED}."
        )
    if len(files) > 1:
        return _many_files(source, files)
    return _file_reader(files[0], csv_delimiter)


def _folder_reader(folder: Path) -> Reader:
    if (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file():
        return ArrowDiskReader(folder, data_files(folder))
    parquet = sorted(p for p in folder.rglob("*.parquet") if p.is_file())
    if parquet:
        return ParquetReader(folder, parquet)
    raise CorpusError(
        f"Folder {folder} holds no .parquet files and no datasets save_to_disk layout (state.json). "
        f"Readable: {SUPPORTED}."
    )


def _many_files(source: Path, files: list[Path]) -> Reader:
    kinds = {_kind(f) for f in files}
    if kinds == {"parquet"}:
        return ParquetReader(source, files)
    if kinds == {"arrow"}:
        return ArrowDiskReader(source, files)
    names = ", ".join(f.name for f in files[:3])
    raise CorpusError(
        f"{source} matches {len(files)} files ({names}, ...); a glob is read for parquet or Arrow "
        "files only. Concatenate the others into one file, or pass them one run each."
    )


def _file_reader(path: Path, csv_delimiter: str | None = None) -> Reader:
    kind = _kind(path)
    if kind == "parquet":
        return ParquetReader(path, [path])
    if kind == "arrow":
        return ArrowDiskReader(path, [path])
    if kind == "csv":
        return DelimitedReader(path, csv_delimiter)
    by_kind: dict[str, Callable[[Path], Reader]] = {
        "jsonl": JsonlReader,
        "json": JsonListReader,
        "pickle": PickleReader,
    }
    return by_kind[kind](path)


def _kind(path: Path) -> str:
    """parquet, arrow, jsonl, json, csv or pickle; an unknown format raises CorpusError."""
    name = base_name(path)
    suffix = Path(name).suffix
    if path.name.lower().endswith(".parquet"):
        return "parquet"
    if path.name.lower().endswith((".arrow", ".feather")):
        return "arrow"
    if suffix in BY_NAME:
        return {JsonlReader: "jsonl", DelimitedReader: "csv", PickleReader: "pickle"}[BY_NAME[suffix]]
    return _kind_from_content(path, suffix)


def _kind_from_content(path: Path, suffix: str) -> str:
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith(ARROW_FILE_MAGIC) or head.startswith(ARROW_STREAM_MAGIC):
        return "arrow"
    if head.startswith(PICKLE_MAGIC):
        return "pickle"
    if head.startswith(GZIP_MAGIC) or head.startswith(ZSTD_MAGIC):
        return "jsonl"  # a compressed file without a telling name: JSONL is the common case
    first = head.lstrip()[:1]
    if first == b"{":
        return "jsonl"  # also a .json file holding one object per line
    if first == b"[":
        return "json"
    raise CorpusError(
        f"Cannot tell the format of {path} (name ending {suffix or 'none'!r}, first bytes "
        f"{head[:8]!r}). Readable: {SUPPORTED}."
    )
