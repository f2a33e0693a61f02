import subprocess
import sys
from dataclasses import replace

import h5py
import numpy as np
import pytest

from tests.fixtures.synthetic import identity, vectors
from kit.shardfile import ShardSpec
from embedder.shard import ShardWriter
from kit.shardfile import check_complete, read_header, set_aside_files
from tests.helpers import REPO
from tests.storage import fill, tmpfs
from kit.errors import ShardError

SPEC = ShardSpec(3, 100, 160)
IDENT = identity(8, "f" * 64)


def _ids(lo, hi):
    return [f"doc-{i}" for i in range(lo, hi)]


def test_commit_renames_only_after_checks(tmp_path):
    path = tmp_path / "shard-00003.h5"
    w = ShardWriter(path, SPEC, IDENT, {"host": "h"})
    w.append(vectors(100, 160, 8), _ids(100, 160))
    assert not path.exists() and w.tmp.exists()
    header = w.commit({"finished_at": "now"})
    assert path.exists() and not w.tmp.exists()
    assert (header.start, header.stop, header.rows, header.rows_done, header.complete) == (
        100,
        160,
        60,
        60,
        True,
    )
    assert header.identity == IDENT


def test_resume_continues_from_rows_done_and_drops_uncounted_rows(tmp_path):
    path = tmp_path / "shard-00003.h5"
    w = ShardWriter(path, SPEC, IDENT, {})
    w.append(vectors(100, 120, 8), _ids(100, 120))
    w.h5["embeddings"].resize(30, axis=0)  # rows written but never counted (killed before rows_done)
    w.close()
    w2 = ShardWriter(path, SPEC, IDENT, {})
    assert w2.resumed_from == 20 and w2.h5["embeddings"].shape == (20, 8)
    w2.append(vectors(120, 160, 8), _ids(120, 160))
    w2.commit({})
    with h5py.File(path) as h5:
        np.testing.assert_array_equal(h5["embeddings"][:], vectors(100, 160, 8))
        assert h5.attrs["attempts"] == 2


def test_partial_file_of_another_model_is_set_aside(tmp_path):
    path = tmp_path / "shard-00003.h5"
    w = ShardWriter(path, SPEC, IDENT, {})
    w.append(vectors(100, 110, 8), _ids(100, 110))
    w.close()
    w2 = ShardWriter(path, SPEC, replace(IDENT, model="other"), {})
    assert w2.resumed_from == 0
    assert len(list(tmp_path.glob("shard-00003.h5.tmp.set-aside-*"))) == 1
    w2.close()


def test_unreadable_partial_file_is_set_aside(tmp_path):
    path = tmp_path / "shard-00003.h5"
    (tmp_path / "shard-00003.h5.tmp").write_bytes(b"\x89HDF\r\n garbage")
    w = ShardWriter(path, SPEC, IDENT, {})
    assert w.resumed_from == 0
    w.close()
    kept = list(tmp_path.glob("shard-00003.h5.tmp.set-aside-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"\x89HDF\r\n garbage"  # kept, not deleted


def test_check_catches_all_zero_tail_that_opens_cleanly(tmp_path):
    path = tmp_path / "shard-00003.h5"
    w = ShardWriter(path, SPEC, IDENT, {})
    w.append(vectors(100, 160, 8), _ids(100, 160))
    w.commit({})
    with h5py.File(path, "a") as h5:
        h5["embeddings"][50:] = 0
    assert read_header(path).rows == 60  # shape and counters look complete
    with pytest.raises(
        ShardError, match=r"shard-00003.h5 rows \[100, 160\): all-zero rows at rows \[150, 160\)"
    ):
        check_complete(path)


def test_append_past_the_range_is_refused(tmp_path):
    w = ShardWriter(tmp_path / "shard-00003.h5", SPEC, IDENT, {})
    with pytest.raises(ShardError, match="cannot append"):
        w.append(vectors(0, 61, 8), _ids(0, 61))
    w.close()


# A full disk mid-flush (a real tmpfs): the task fails saying so; once space is freed the next
# attempt resumes from the counted rows or sets the untrusted partial file aside, and finishes.
# The failing attempt runs in its own process, as a task does: HDF5 keeps a file whose write
# failed open (its space is not freed) until the process exits.
FULL_ROWS, FULL_DIM = 3000, 384  # 3 chunks of 682 rows (1 MiB each) and a partial one
FAILING_TASK = """
import sys
from pathlib import Path
from embedder.shard import ShardWriter
from tests.fixtures.synthetic import identity, vectors
from kit.errors import ShardError
from kit.shardfile import ShardSpec
rows, dim = int(sys.argv[2]), int(sys.argv[3])
writer = ShardWriter(Path(sys.argv[1]), ShardSpec(0, 0, rows), identity(dim, "f"), {})
try:
    for lo in range(0, rows, 100):
        writer.append(vectors(lo, lo + 100, dim), [f"d{i}" for i in range(lo, lo + 100)])
except ShardError as err:
    print(err)
    writer.close()
"""


@pytest.mark.parametrize("leave_mib", [0.5, 2.5])
def test_full_disk_mid_flush_then_the_next_attempt_finishes(tmp_path, leave_mib):
    spec, ident = ShardSpec(0, 0, FULL_ROWS), identity(FULL_DIM, "f")
    with tmpfs(tmp_path / "fs", 16 << 20) as fs:
        path = fs / "shards" / "shard-00000.h5"
        filler = fill(fs, int(leave_mib * 2**20))
        failed = subprocess.run(
            [sys.executable, "-c", FAILING_TASK, str(path), str(FULL_ROWS), str(FULL_DIM)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "no space left on device while flushing rows" in failed.stdout, failed.stdout + failed.stderr
        assert f"Free space in {fs}, then: make submit RUN={fs}" in failed.stdout
        filler.unlink()
        writer = ShardWriter(path, spec, ident, {})
        assert writer.resumed_from > 0 or len(set_aside_files(fs)) == 1  # resumed, or kept aside and named
        for lo in range(writer.rows_done, FULL_ROWS, 100):
            writer.append(vectors(lo, lo + 100, FULL_DIM), [f"d{i}" for i in range(lo, lo + 100)])
        writer.commit({})
        with h5py.File(path) as h5:
            np.testing.assert_array_equal(h5["embeddings"][:], vectors(0, FULL_ROWS, FULL_DIM))
            assert h5["ids"].asstr()[-1] == f"d{FULL_ROWS - 1}"


def test_a_partial_chunk_whose_digest_did_not_reach_the_disk_is_recomputed(tmp_path):
    """A kill between the digest and rows_done: resume at the chunk boundary, not a set-aside."""
    spec, ident = ShardSpec(0, 0, 70_000), identity(8, "f")  # chunks of 32,768 rows
    path = tmp_path / "shard-00000.h5"
    writer = ShardWriter(path, spec, ident, {})
    writer.append(vectors(0, 40_000, 8), _ids(0, 40_000))
    writer.close()
    with h5py.File(atomic_tmp(path), "a") as h5:
        h5["checksums"][1] = 12345  # as if the partial chunk's new digest never reached the disk
    writer = ShardWriter(path, spec, ident, {})
    assert writer.resumed_from == 32_768 and not set_aside_files(tmp_path)
    writer.append(vectors(32_768, 70_000, 8), _ids(32_768, 70_000))
    writer.commit({})
    with h5py.File(path) as h5:
        np.testing.assert_array_equal(h5["embeddings"][:], vectors(0, 70_000, 8))


def test_a_flipped_bit_in_a_full_chunk_sets_the_partial_file_aside(tmp_path):
    spec, ident = ShardSpec(0, 0, 70_000), identity(8, "f")
    path = tmp_path / "shard-00000.h5"
    writer = ShardWriter(path, spec, ident, {})
    writer.append(vectors(0, 40_000, 8), _ids(0, 40_000))
    writer.close()
    with h5py.File(atomic_tmp(path), "a") as h5:
        h5["embeddings"][5, 0] += 1e-6
    writer = ShardWriter(path, spec, ident, {})
    assert writer.resumed_from == 0
    assert len(list(tmp_path.glob("shard-00000.h5.tmp.set-aside-*"))) == 1
    writer.close()


def atomic_tmp(path):
    return path.with_name(path.name + ".tmp")
