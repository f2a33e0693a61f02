"""make export: verify embeddings.h5, then hand it to the writer of the FORMAT asked for.

Apart from merge/export.py (what every writer shares) so that the writers import the shared part
and nothing imports back.
"""

from __future__ import annotations

from pathlib import Path

from kit.commands import make_command
from kit.format import RunPaths
from merge.export import FORMATS, ExportError, ExportResult, npy_folder, parquet_path, verified_digest
from merge.export_npy import write_npy
from merge.export_parquet import write_parquet


def export_run(run_dir: Path, fmt: str, float16: bool = False) -> ExportResult:
    """Export ``run_dir/embeddings.h5`` as ``fmt`` (parquet or npy), atomically, with sha256 sidecars.

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
    dtype = "float16" if float16 else "float32"
    if fmt == "parquet":
        return write_parquet(src, parquet_path(src, dtype), digest, dtype)
    return write_npy(src, npy_folder(src, dtype), digest, dtype)
