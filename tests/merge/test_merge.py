import json
import subprocess

import h5py
import numpy as np
import pytest

from jobs.merging import merge_run_folder, merged_summary
from tests.fixtures.synthetic import SYNTHETIC_MODEL, identity, synthetic_run, vectors, write_shard
from kit.shardfile import ShardSpec
from kit.errors import MergeError, ShardDataError, ShardGapError, ShardMismatchError

N, SHARDS, DIM = 300, 4, 16


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "my run"  # a space in the path on purpose
    state = synthetic_run(run, N, SHARDS, DIM)
    return run, list(state.plan)


def _merge(run, plan):
    """The real merge of the run folder, against the identity its run.json pins (``plan`` is run.json's)."""
    return merge_run_folder(run)


def _no_output(run):
    return not (run / "embeddings.h5").exists() and not (run / "embeddings.h5.tmp").exists()


def test_merge_streams_shards_into_one_verified_file(run_dir):
    run, plan = run_dir
    summary = _merge(run, plan)
    with h5py.File(summary.path) as h5:
        np.testing.assert_array_equal(h5["embeddings"][:], vectors(0, N, DIM))
        assert h5["ids"].asstr()[:].tolist() == [f"doc-{i}" for i in range(N)]
        assert h5["titles"].asstr()[7] == "Title 7" and h5["urls"].asstr()[7] == "https://example.org/7"
        assert h5.attrs["model"] == SYNTHETIC_MODEL and h5.attrs["embedding_dim"] == DIM
        quality = json.loads(h5.attrs["quality_metrics"])
        chunks = json.loads(h5.attrs["chunk_info"])
        assert h5["rejected/row"].shape == (0,)
    assert quality["mean_norm"] == pytest.approx(1.0, abs=1e-5) and not quality["has_nan"]
    assert [(c["start_index"], c["end_index"]) for c in chunks] == [(s.start, s.stop) for s in plan]
    check = subprocess.run(
        ["sha256sum", "-c", "embeddings.h5.sha256"], cwd=run, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_summary_is_read_back_as_the_merge_wrote_it(run_dir):
    run, plan = run_dir
    summary = _merge(run, plan)
    assert summary.seconds > 0 and summary.sha256 == (run / "embeddings.h5.sha256").read_text().split()[0]
    assert merged_summary(run) == summary  # merge.json, beside embeddings.h5
    (run / "merge.json").unlink()  # a fetched folder has only embeddings.h5 and its sidecar
    from_file = merged_summary(run)
    assert from_file.seconds is None and from_file.quality == summary.quality
    assert (from_file.rows, from_file.dim, from_file.sha256) == (N, DIM, summary.sha256)


def _shard(run, i):
    return run / "shards" / f"shard-{i:05d}.h5"


def test_truncated_shard_is_refused(run_dir):
    run, plan = run_dir
    with h5py.File(_shard(run, 1), "a") as h5:
        h5["embeddings"].resize(50, axis=0)
    with pytest.raises(
        MergeError, match=r"shard-00001.h5 rows \[75, 150\) is truncated: it holds 50 rows"
    ) as e:
        _merge(run, plan)
    assert "REDO=1" in str(e.value) and _no_output(run)


def test_all_zero_tail_is_refused(run_dir):
    run, plan = run_dir
    with h5py.File(_shard(run, 2), "a") as h5:
        h5["embeddings"][60:] = 0
    with pytest.raises(ShardDataError, match=r"shard-00002.h5 has all-zero rows at rows \[210, 225\)") as e:
        _merge(run, plan)
    assert "make resubmit RUN='" in str(e.value) and "REDO=2" in str(e.value) and _no_output(run)
    assert e.value.shard == _shard(run, 2) and e.value.redo == {2}  # typed: no one reads the message for it


def test_nan_is_refused(run_dir):
    run, plan = run_dir
    with h5py.File(_shard(run, 0), "a") as h5:
        h5["embeddings"][3, 0] = np.nan
    with pytest.raises(ShardDataError, match=r"shard-00000.h5 has non-finite values at rows \[3, 4\)"):
        _merge(run, plan)
    assert _no_output(run)


def test_gap_is_refused_with_the_command_that_fills_it(run_dir):
    run, plan = run_dir
    _shard(run, 3).unlink()
    with pytest.raises(
        ShardGapError, match=r"Rows \[225, 300\) are missing \(shard-00003.h5: not written\)"
    ) as e:
        _merge(run, plan)
    assert str(e.value).rstrip().endswith(f"Run: make resubmit RUN='{run}'") and _no_output(run)


def test_overlap_is_refused(run_dir):
    run, plan = run_dir
    ident = identity(DIM, json.loads((run / "run.json").read_text())["corpus"]["fingerprint"])
    write_shard(run, ShardSpec(9, 60, 90), ident)
    with pytest.raises(
        MergeError,
        match=r"Rows \[60, 75\) are in two shards: shard-00000.h5 \[0, 75\) and "
        r"shard-00009.h5 \[60, 90\)",
    ) as e:
        _merge(run, plan)
    assert "REDO=9" in str(e.value) and _no_output(run)


@pytest.mark.parametrize("key,value", [("dim", 8), ("pooling", "Pooling(cls)")])
def test_shard_disagreeing_on_what_run_json_leaves_open_is_refused(run_dir, key, value):
    run, plan = run_dir
    with h5py.File(_shard(run, 1), "a") as h5:
        h5.attrs[key] = value
    with pytest.raises(ShardMismatchError, match=f"Shards disagree on {key}: shard-00001.h5 has"):
        _merge(run, plan)
    assert _no_output(run)


@pytest.mark.parametrize(
    "key,value",
    [
        ("prompt", "query: "),
        ("model_revision", "0123abcd"),
        ("normalize_embeddings", True),
        ("max_seq_length", 128),
        ("model_fingerprint", "1" * 64),
    ],
)
def test_shards_unlike_run_json_are_refused_even_as_the_majority(run_dir, key, value):
    run, plan = run_dir
    pinned = json.loads((run / "run.json").read_text())["pinned"][key]
    for i in (1, 2, 3):  # three shards of four: the majority
        with h5py.File(_shard(run, i), "a") as h5:
            h5.attrs[key] = value
    with pytest.raises(ShardMismatchError) as e:
        _merge(run, plan)
    assert e.value.redo == {1, 2, 3} and _no_output(run)
    message = str(e.value)
    for i in (1, 2, 3):
        assert f"shard-0000{i}.h5 has {key} {value!r}; run.json pins {pinned!r}." in message, message
    assert message.rstrip().endswith(f"Run: make resubmit RUN='{run}' REDO=1-3"), message


def test_wrong_dim_data_is_refused(run_dir):
    run, plan = run_dir
    fp = json.loads((run / "run.json").read_text())["corpus"]["fingerprint"]
    _shard(run, 2).unlink()
    write_shard(run, plan[2], identity(8, fp))
    with pytest.raises(ShardMismatchError, match="Shards disagree on dim: shard-00002.h5 has 8"):
        _merge(run, plan)


def test_shard_of_another_corpus_is_refused(run_dir):
    run, plan = run_dir
    with h5py.File(_shard(run, 0), "a") as h5:
        h5["ids"][5] = "someone-else"
    with pytest.raises(ShardDataError, match="row 5: shard id b'someone-else' is not the corpus id b'doc-5'"):
        _merge(run, plan)
    assert _no_output(run)


def test_failed_merge_keeps_the_previous_good_file(run_dir):
    run, plan = run_dir
    first = _merge(run, plan)
    before = (run / "embeddings.h5").read_bytes()
    with h5py.File(_shard(run, 2), "a") as h5:
        h5["embeddings"][0] = 0
    with pytest.raises(ShardDataError):
        _merge(run, plan)
    assert (run / "embeddings.h5").read_bytes() == before and not (run / "embeddings.h5.tmp").exists()
    assert first.sha256 in (run / "embeddings.h5.sha256").read_text()


def test_a_merge_that_runs_out_of_space_leaves_no_output_then_the_same_command_succeeds(tmp_path):
    """Through the CLI: a process whose HDF5 write failed exits, as a merge job does."""
    from tests.helpers import jobs_cli
    from tests.storage import fill, tmpfs

    with tmpfs(tmp_path / "fs", 16 << 20) as fs:
        run = fs / "run"
        synthetic_run(run, 20_000, SHARDS, 32)  # 2.4 MiB of vectors
        filler = fill(fs, 1 << 20)
        refused = jobs_cli("merge", "--run", str(run), check=False)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert "Merge stopped: no space left on device while writing" in refused.stderr
        assert f"make merge RUN={run}" in refused.stderr and _no_output(run)
        filler.unlink()
        jobs_cli("merge", "--run", str(run))
        with h5py.File(run / "embeddings.h5") as h5:
            np.testing.assert_array_equal(h5["embeddings"][:], vectors(0, 20_000, 32))
