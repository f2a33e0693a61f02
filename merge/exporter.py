"""make export: verify embeddings.h5, then hand it to the writer of the FORMAT asked for.

Apart from merge/export.py (what every writer shares) so that the writers import the shared part
and nothing imports back.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kit.commands import make_command
from kit.format import COMPACT_FILES, RunPaths, npy_folder, parquet_path, passages_export_target
from kit.h5files import open_h5
from kit.passagefile import has_passages
from merge.export import FORMATS, ExportError, ExportResult, verified_digest
from merge.export_npy import write_npy
from merge.export_parquet import write_parquet
from merge.export_passages import write_passages


def export_run(run_dir: Path, fmt: str, float16: bool = False, text: bool = False) -> ExportResult:
    """Export ``run_dir/embeddings.h5`` as ``fmt`` (parquet, npy, int8 or binary), atomically, with sha256 sidecars.

    A PASSAGES=1 run also gets its passages table (``passages.parquet`` or ``passages-npy-float32/``,
    merge/export_passages.py) in parquet and npy; ``text``: with each passage's text (TEXT=1).

    int8 and binary are the smaller copies ``make search`` reads (``search.compact``; FLOAT16 does
    not apply to them), and their report line says their recall@10 against float32 exact search.

    A re-run replaces the previous export. Raises ExportError before writing anything when the
    source is missing or does not match its sidecar.
    """
    if fmt not in FORMATS:
        raise ExportError(
            f"FORMAT={fmt!r} is not an export format. Choose from: {', '.join(FORMATS)}, e.g. "
            f"{make_command('export', RUN=run_dir, FORMAT='parquet')}"
        )
    src = RunPaths.of(run_dir).output
    digest = verified_digest(src)
    if fmt in COMPACT_FILES:
        if text:
            raise ExportError(
                f"TEXT=1 adds text to the passages table of FORMAT=parquet or npy, not to {fmt}."
            )
        return _compact(src, fmt, digest)
    dtype = "float16" if float16 else "float32"
    with open_h5(src) as h5:
        passages = has_passages(h5)
    if text and not passages:
        raise ExportError(
            f"TEXT=1 adds each passage's text to the passages table, and {src} has no passages (a run made "
            "without PASSAGES=1); nothing was exported. Leave TEXT out."
        )
    if fmt == "parquet":
        result = write_parquet(src, parquet_path(src, dtype), digest, dtype)
    else:
        result = write_npy(src, npy_folder(src, dtype), digest, dtype)
    if passages:
        table = write_passages(src, passages_export_target(src, fmt, dtype), fmt, digest, dtype, text)
        result = replace(result, passages=table)
    return result


def _compact(src: Path, fmt: str, digest: str) -> ExportResult:
    """The int8 or binary copy of ``src`` (search/compact.py: codes, calibration, recall measured)."""
    from search.compact import write_compact  # numpy and h5py only: no model, no faiss

    result = write_compact(src, fmt, digest)
    return ExportResult(result.path, result.rows, result.dim, fmt, result.sha256, recall=result.describe())
