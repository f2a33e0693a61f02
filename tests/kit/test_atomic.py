"""kit/atomic.py: a final name means a complete file, on a real file system."""

from __future__ import annotations

import errno
import hashlib
import subprocess

import pytest

from kit import atomic
from kit.format import sidecar_path


def test_write_text_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "new folder" / "run.json"
    atomic.write_text(path, '{"a": 1}')
    atomic.write_text(path, "é" * 10)
    assert path.read_text(encoding="utf-8") == "é" * 10
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.json"]  # no run.json.tmp left
    assert atomic.tmp_path(path) == path.parent / "run.json.tmp"


def test_a_block_that_raises_leaves_no_half_file(tmp_path):
    path = tmp_path / "out.h5.tmp"
    with pytest.raises(KeyboardInterrupt), atomic.removed_on_error(path) as tmp:  # Ctrl-C mid-write
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert not path.exists()
    with atomic.removed_on_error(path) as tmp:
        tmp.write_bytes(b"whole")
    assert path.read_bytes() == b"whole"


def test_commit_renames_onto_the_final_name(tmp_path):
    tmp, final = tmp_path / "a.tmp", tmp_path / "a"
    final.write_bytes(b"old")
    tmp.write_bytes(b"new")
    atomic.commit(tmp, final)
    assert final.read_bytes() == b"new" and not tmp.exists()


def test_commit_with_sidecar_writes_a_checkable_sidecar_first(tmp_path):
    tmp, final = tmp_path / "embeddings.h5.tmp", tmp_path / "embeddings.h5"
    payload = bytes(range(256)) * 40_000  # 10 MB: more than one hashing block
    tmp.write_bytes(payload)
    digest = atomic.commit_with_sidecar(tmp, final)
    assert digest == hashlib.sha256(payload).hexdigest() and not tmp.exists()
    assert sidecar_path(final).read_text() == f"{digest}  embeddings.h5\n"
    check = subprocess.run(
        ["sha256sum", "-c", "embeddings.h5.sha256"], cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 5])
def test_sha256_file_in_blocks_equals_hashlib(tmp_path, size):
    path = tmp_path / "f"
    data = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    path.write_bytes(data)
    assert atomic.sha256_file(path, block_bytes=4096) == hashlib.sha256(data).hexdigest()
    assert atomic.sha256_and_fsync(path) == hashlib.sha256(data).hexdigest()


def test_a_full_disk_is_named_however_it_is_worded():
    assert atomic.storage_cause(OSError(errno.ENOSPC, "No space left on device")) == atomic.NO_SPACE
    hdf5 = RuntimeError("Can't write data (file write failed: time = Mon, errno = 28, error message = 'x')")
    assert atomic.storage_cause(hdf5) == atomic.NO_SPACE
    assert (
        atomic.storage_cause(OSError(errno.EIO, "Input/output error"))
        == "storage error ([Errno 5] Input/output error)"
    )
    assert atomic.storage_cause(RuntimeError("first line\nsecond")) == "storage error (first line)"
    assert atomic.storage_cause(RuntimeError()) == "storage error (RuntimeError)"


def test_space_shortfall_names_the_folder_and_the_need(tmp_path):
    assert atomic.space_shortfall(tmp_path, 0) is None
    free = atomic.free_bytes(tmp_path)
    assert free > 0
    short = atomic.space_shortfall(tmp_path, free + 2**40)
    assert short is not None and short.startswith(f"No space left on device: {tmp_path} has ")
    assert f"about {(free + 2**40) / 2**20:,.0f} MiB" in short
