"""The exports read by clients no one here wrote: pyarrow, DuckDB, Hugging Face datasets, LanceDB, FAISS,
embedding-reader. Each runs the snippet of docs/EXPORT.md as printed there, on a real run (Vital Articles,
all-MiniLM-L6-v2, the real CLI) exported with the real CLI."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import MERGED_ROWS, copy_run, cosine_rows
from tests.helpers import REPO, jobs_cli

ROWS = MERGED_ROWS
DOC_RUN = "runs/wiki"  # the run folder the snippets name


def doc_snippets() -> dict[str, str]:
    """The first python block under each ``### Name`` heading of docs/EXPORT.md, by the heading's first word."""
    text = (REPO / "docs" / "EXPORT.md").read_text()
    return {
        name.split()[0].lower(): code
        for name, code in re.findall(r"^### (.+?)\n.*?```python\n(.*?)```", text, flags=re.S | re.M)
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory, merged_run):
    """A real run (a copy of the session's merged run), exported as parquet, float16 parquet and npy
    through the CLI."""
    run = copy_run(merged_run, tmp_path_factory.mktemp("clients") / "wiki run")
    for args in (("--format", "parquet"), ("--format", "parquet", "--float16", "1"), ("--format", "npy")):
        jobs_cli("export", "--run", str(run), *args)
    with h5py.File(run / "embeddings.h5", "r") as h5:
        source = {
            "vectors": h5["embeddings"][:],
            "ids": h5["ids"].asstr()[:].tolist(),
            "titles": h5["titles"].asstr()[:].tolist(),
            "topics": h5["topics"].asstr()[:].tolist(),
            "model": h5.attrs["model"],
        }
    return run, source


def run_snippet(name: str, run) -> dict:
    """Execute a docs/EXPORT.md snippet with ``run`` in place of runs/wiki; returns its variables."""
    code = doc_snippets()[name]
    assert DOC_RUN in code
    namespace: dict = {}
    exec(compile(code.replace(DOC_RUN, run.as_posix()), f"docs/EXPORT.md ({name})", "exec"), namespace)
    return namespace


def test_pyarrow_schema_rows_and_vectors_equal_the_hdf5(exported):
    run, source = exported
    found = run_snippet("pyarrow", run)
    table = found["table"]
    assert table.schema.names == ["id", "title", "url", "topic", "embedding"]
    kind = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(kind) and (kind.value_type, kind.list_size) == (pa.float32(), 384)
    assert len(table) == ROWS and table["id"].to_pylist() == source["ids"]
    assert table["topic"].to_pylist() == source["topics"]
    np.testing.assert_array_equal(found["vectors"], source["vectors"])
    identity = found["identity"]
    assert (identity["model"], identity["embedding_dim"]) == (source["model"], 384)
    assert identity["source_sha256"] == (run / "embeddings.h5.sha256").read_text().split()[0]


def test_float16_parquet_keeps_the_cosine(exported):
    import pyarrow.parquet as pq

    run, source = exported
    table = pq.read_table(run / "embeddings.float16.parquet")
    half = table["embedding"].combine_chunks().flatten().to_numpy().reshape(ROWS, -1)
    assert half.dtype == np.float16
    assert cosine_rows(half.astype(np.float32), source["vectors"]).min() >= 0.9999


def test_duckdb_cosine_of_a_row_with_itself_is_one(exported):
    run, source = exported
    found = run_snippet("duckdb", run)
    nearest = found["nearest"]
    assert found["dim"] == 384 and nearest[0][0] == found["query_id"] == source["ids"][0]
    assert nearest[0][2] == pytest.approx(1.0, abs=1e-6) and all(
        score < nearest[0][2] for _, _, score in nearest[1:]
    )


def test_hugging_face_datasets_loads_the_parquet(exported, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")  # not ~/.cache
    run, source = exported
    found = run_snippet("hugging", run)
    ds = found["ds"]
    assert ds.num_rows == ROWS and ds["id"] == source["ids"]
    assert ds.features["embedding"].length == 384 and ds.features["embedding"].feature.dtype == "float32"
    np.testing.assert_array_equal(found["first"], source["vectors"][0])


def test_lancedb_table_from_the_parquet_finds_the_row_itself_first(exported):
    run, source = exported
    found = run_snippet("lancedb", run)
    assert found["table"].count_rows() == ROWS
    hits = found["hits"]
    assert hits[0]["id"] == found["query"]["id"] and hits[0]["_distance"] == pytest.approx(0.0, abs=1e-5)
    # and every row finds itself first
    table = found["table"]
    for row in (1, ROWS // 2, ROWS - 1):
        hit = table.search(source["vectors"][row], vector_column_name="embedding").metric("cosine").limit(1)
        assert hit.to_list()[0]["id"] == source["ids"][row]


def test_faiss_on_the_npy_export_retrieves_each_row_itself(exported):
    run, source = exported
    found = run_snippet("faiss", run)
    assert found["ids"] == source["ids"]
    _, top = found["index"].search(found["x"], 1)
    self_retrieval = float(np.mean(top[:, 0] == np.arange(ROWS)))
    print(f"FAISS top-1 self-retrieval on {ROWS} rows: {self_retrieval:.2%}")
    assert self_retrieval >= 0.999
    assert [found["ids"][r] for r in found["rows"][:, 0]] == source["ids"][:5]


def test_embedding_reader_streams_the_npy_layout(exported):
    run, source = exported
    found = run_snippet("embedding-reader", run)
    reader = found["reader"]
    assert (reader.count, reader.dimension) == (ROWS, 384)
    batches = list(reader(batch_size=250, show_progress=False))
    np.testing.assert_array_equal(np.concatenate([b for b, _ in batches]), source["vectors"])
    assert sum((m["id"].tolist() for _, m in batches), []) == source["ids"]
    assert json.loads((run / "run.json").read_text())["corpus"]["rows"] == ROWS
