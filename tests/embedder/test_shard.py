import h5py
import numpy as np
import pytest

from jobs.testing.synthetic import identity, vectors
from kit.shardfile import ShardSpec
from embedder.shard import ShardWriter
from kit.shardfile import check_complete, read_header
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
    assert (header.start, header.stop, header.rows, header.rows_done, header.complete) == (100, 160, 60, 60, True)
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
    w2 = ShardWriter(path, SPEC, {**IDENT, "model": "other"}, {})
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
    with pytest.raises(ShardError, match=r"shard-00003.h5 rows \[100, 160\): all-zero rows at rows \[150, 160\)"):
        check_complete(path)


def test_append_past_the_range_is_refused(tmp_path):
    w = ShardWriter(tmp_path / "shard-00003.h5", SPEC, IDENT, {})
    with pytest.raises(ShardError, match="cannot append"):
        w.append(vectors(0, 61, 8), _ids(0, 61))
    w.close()
