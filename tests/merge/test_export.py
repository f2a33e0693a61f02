"""make export: the parquet and npy files equal embeddings.h5, are atomic and sidecar-checked, and refuse
an unverified source. Synthetic vectors (the model is beside the point); real HDF5, parquet, npy."""

from __future__ import annotations

import json
import shutil
import subprocess

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.merging import merge_run_folder
from tests.fixtures.synthetic import synthetic_run
from merge import export_parquet
from merge.export import BLOCK_ROWS, ExportError
from merge.exporter import export_run
from tests.helpers import cli_args, jobs_cli

N, DIM = 2 * BLOCK_ROWS + 123, 8  # three row groups, the last one short


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    run = tmp_path_factory.mktemp("export") / "my run"  # a space on purpose
    synthetic_run(run, N, 3, DIM, fast=True)
    merge_run_folder(run)
    return run


@pytest.fixture
def run(merged, tmp_path):
    """A fresh copy of the merged run's output: what a laptop holds after make fetch, nothing else."""
    laptop = tmp_path / "fetched run"
    laptop.mkdir()
    for name in ("embeddings.h5", "embeddings.h5.sha256"):
        shutil.copy2(merged / name, laptop / name)
    return laptop


def _hdf5(run):
    with h5py.File(run / "embeddings.h5", "r") as h5:
        return (
            h5["embeddings"][:],
            {
                c: h5[ds].asstr()[:].tolist()
                for ds, c in (("ids", "id"), ("titles", "title"), ("urls", "url"))
            },
            dict(h5.attrs),
        )


def _sidecars_check(folder, *names):
    check = subprocess.run(
        ["sha256sum", "-c", *[n + ".sha256" for n in names]], cwd=folder, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_parquet_equals_the_hdf5_with_identity_and_row_groups(run):
    result = export_run(run, "parquet")
    vectors, texts, attrs = _hdf5(run)
    path = run / "embeddings.parquet"
    assert result.path == path and (result.rows, result.dim, result.dtype) == (N, DIM, "float32")
    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    assert schema.names == ["id", "title", "url", "embedding"]
    assert schema.field("embedding").type == pa.list_(pa.field("item", pa.float32(), nullable=False), DIM)
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [
        BLOCK_ROWS,
        BLOCK_ROWS,
        123,
    ]
    table = parquet.read()
    np.testing.assert_array_equal(
        table["embedding"].combine_chunks().flatten().to_numpy().reshape(N, DIM), vectors
    )
    assert {c: table[c].to_pylist() for c in texts} == texts
    meta = json.loads(schema.metadata[b"embedkit"])
    assert meta["source_sha256"] == (run / "embeddings.h5.sha256").read_text().split()[0]
    assert (
        meta["model"] == attrs["model"]
        and meta["provenance_model_fingerprint"] == attrs["provenance_model_fingerprint"]
    )
    assert (meta["rows"], meta["embedding_dim"], meta["embedding_dtype"]) == (N, DIM, "float32")
    assert meta["quality_metrics"]["rows_checked"] == N and "chunk_info" not in meta
    _sidecars_check(run, "embeddings.parquet")
    assert sorted(p.name for p in run.iterdir()) == [
        "embeddings.h5",
        "embeddings.h5.sha256",
        "embeddings.parquet",
        "embeddings.parquet.sha256",
    ]


def test_float16_parquet_and_npy(run):
    vectors, texts, _ = _hdf5(run)
    export_run(run, "parquet", float16=True)
    table = pq.read_table(run / "embeddings.float16.parquet")
    assert table.schema.field("embedding").type.value_type == pa.float16()
    half = table["embedding"].combine_chunks().flatten().to_numpy().reshape(N, DIM)
    np.testing.assert_array_equal(half, vectors.astype(np.float16))
    export_run(run, "npy", float16=True)
    npy = np.load(run / "embeddings-npy-float16" / "embeddings.npy")
    assert npy.dtype == np.float16 and np.array_equal(npy, vectors.astype(np.float16))
    _sidecars_check(run, "embeddings.float16.parquet")


def test_npy_folder_holds_the_vectors_and_the_ids_in_order(run):
    result = export_run(run, "npy")
    vectors, texts, _ = _hdf5(run)
    folder = run / "embeddings-npy-float32"
    assert result.path == folder and sorted(p.name for p in folder.iterdir()) == [
        "embeddings.npy",
        "embeddings.npy.sha256",
        "metadata.parquet",
        "metadata.parquet.sha256",
    ]
    npy = np.load(folder / "embeddings.npy", mmap_mode="r")
    assert npy.dtype == np.float32 and np.array_equal(npy, vectors)
    meta = pq.read_table(folder / "metadata.parquet")
    assert {c: meta[c].to_pylist() for c in texts} == texts
    assert json.loads(meta.schema.metadata[b"embedkit"])["embedding_dtype"] == "float32"
    _sidecars_check(folder, "embeddings.npy", "metadata.parquet")


def test_a_rerun_replaces_the_export_and_leaves_nothing_else(run):
    for _ in range(2):
        first = export_run(run, "npy")
        again = export_run(run, "parquet")
    assert first.sha256 == export_run(run, "npy").sha256 and again.sha256 == export_run(run, "parquet").sha256
    assert sorted(p.name for p in run.iterdir()) == [
        "embeddings-npy-float32",
        "embeddings.h5",
        "embeddings.h5.sha256",
        "embeddings.parquet",
        "embeddings.parquet.sha256",
    ]


def test_a_failure_mid_stream_leaves_the_previous_export(run, monkeypatch):
    export_run(run, "parquet")
    before = (run / "embeddings.parquet").read_bytes()
    calls = []

    def second_block_fails(schema, vectors, texts):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real(schema, vectors, texts)

    real = export_parquet.record_batch
    monkeypatch.setattr(export_parquet, "record_batch", second_block_fails)
    with pytest.raises(OSError, match="No space left"):
        export_run(run, "parquet")
    assert (run / "embeddings.parquet").read_bytes() == before and not (
        run / "embeddings.parquet.tmp"
    ).exists()
    _sidecars_check(run, "embeddings.parquet")


def _damage(run):
    with open(run / "embeddings.h5", "r+b") as f:
        f.seek(-100, 2)
        byte = f.read(1)
        f.seek(-100, 2)
        f.write(bytes([byte[0] ^ 1]))


@pytest.mark.parametrize(
    "problem, message",
    [
        (
            "damaged file",
            r"embeddings.h5 has SHA-256 \w+\.\.\., but embeddings.h5.sha256 says \w+\.\.\.: the file is "
            r"damaged or was replaced; nothing was exported",
        ),
        (
            "no sidecar",
            r"embeddings.h5 has no embeddings.h5.sha256: it is not a finished merge. Run: make merge RUN=",
        ),
        ("bad sidecar", r"embeddings.h5.sha256 is damaged \(not a sha256sum line"),
        ("no file", r"has no embeddings.h5 to export"),
    ],
)
def test_an_unverified_source_is_refused_before_anything_is_written(run, problem, message):
    if problem == "damaged file":
        _damage(run)
    elif problem == "no sidecar":
        (run / "embeddings.h5.sha256").unlink()
    elif problem == "bad sidecar":
        (run / "embeddings.h5.sha256").write_text("not a sidecar\n")
    else:
        (run / "embeddings.h5").unlink()
    before = sorted(p.name for p in run.iterdir())
    for fmt in ("parquet", "npy"):
        with pytest.raises(ExportError, match=message):
            export_run(run, fmt)
    assert sorted(p.name for p in run.iterdir()) == before


def test_the_cli_exports_a_fetched_folder_and_names_bad_values(run):
    out = jobs_cli(*cli_args("export", run=run, format="", float16="")).stdout
    assert out.startswith(f"Exported {N:,} rows x {DIM} (float32) to {run / 'embeddings.parquet'} (sha256 ")
    out = jobs_cli(*cli_args("export", run=run, format="npy", float16=1)).stdout
    assert f"(float16) to {run / 'embeddings-npy-float16'}" in out
    refused = jobs_cli(*cli_args("export", run=run, format="csv"), check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"error: FORMAT='csv' is not an export format. Choose from: parquet, npy, int8, binary, e.g. "
        f"make export RUN='{run}' FORMAT=parquet"
    )
    _damage(run)
    refused = jobs_cli(*cli_args("export", run=run, format="npy"), check=False)
    assert refused.returncode == 2 and "nothing was exported" in refused.stderr
    assert f"make merge RUN='{run}'" in refused.stderr
