"""Every chunk of a shard carries an xxh3 digest; the merge verifies it while streaming."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from jobs.merging import merge_run_folder
from tests.fixtures.synthetic import synthetic_run
from kit.errors import ShardDataError, ShardError
from kit.shardfile import check_complete


N, SHARDS, DIM = 300, 3, 16


def flip_bit(path: Path, row: int, column: int = 3) -> tuple[float, float]:
    """Flip one low mantissa bit of ``embeddings[row, column]`` in the file's bytes; (before, after)."""
    with h5py.File(path, "r") as h5:
        emb = h5["embeddings"]
        chunk_rows, dim = emb.chunks[0], emb.shape[1]
        info = emb.id.get_chunk_info_by_coord((row - row % chunk_rows, 0))
        before = float(emb[row, column])
    offset = (
        info.byte_offset + ((row % chunk_rows) * dim + column) * 4 + 1
    )  # little-endian: byte 1 is mantissa
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x01]))
    after = float(np.frombuffer(Path(path).read_bytes()[offset - 1 : offset + 3], "<f4")[0])
    return before, after


def test_a_flipped_bit_is_refused_by_the_merge_naming_shard_rows_and_redo(tmp_path):
    run = tmp_path / "run"
    state = synthetic_run(run, N, SHARDS, DIM)
    spec = state.plan[1]
    before, after = flip_bit(run / "shards" / "shard-00001.h5", 7)
    assert np.isfinite(after) and after != before and abs(after - before) < 1e-3  # finite, normal, plausible
    with pytest.raises(ShardDataError) as err:
        merge_run_folder(run)
    message = str(err.value)
    assert f"shard-00001.h5 rows [{spec.start}, {spec.stop}) fail their checksum" in message
    assert f"make resubmit RUN={run} REDO=1" in message
    assert err.value.shard == run / "shards" / "shard-00001.h5" and err.value.redo == {1}
    assert not (run / "embeddings.h5").exists() and not (run / "embeddings.h5.tmp").exists()


def test_check_complete_refuses_a_corrupt_chunk(tmp_path):
    run = tmp_path / "run"
    synthetic_run(run, N, SHARDS, DIM)
    flip_bit(run / "shards" / "shard-00002.h5", 0)
    with pytest.raises(ShardError, match="fail their checksum"):
        check_complete(run / "shards" / "shard-00002.h5")


def test_make_merge_refuses_a_flipped_bit_naming_the_shard_and_redo(tmp_path):
    from tests.helpers import jobs_cli

    run = tmp_path / "my run"
    state = synthetic_run(run, N, SHARDS, DIM)
    flip_bit(run / "shards" / "shard-00002.h5", 40)
    refused = jobs_cli("merge", "--run", str(run), check=False)
    spec = state.plan[2]
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert f"shard-00002.h5 rows [{spec.start}, {spec.stop}) fail their checksum" in refused.stderr
    assert f"make resubmit RUN='{run}' REDO=2" in refused.stderr and not (run / "embeddings.h5").exists()
