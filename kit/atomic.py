"""Atomic files: write under a temporary name, fsync, rename. A final name means complete."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from collections.abc import Iterator

TMP_SUFFIX = ".tmp"
# What HDF5 raises when a write fails (ENOSPC, EIO): OSError or RuntimeError, errno only in the text.
STORAGE_ERRORS = (OSError, RuntimeError)
NO_SPACE = "no space left on device"


def storage_cause(err: BaseException) -> str:
    """``no space left on device`` for ENOSPC (however HDF5 words it), else the error's first line."""
    text = str(err)
    if (
        getattr(err, "errno", None) == errno.ENOSPC
        or f"errno = {errno.ENOSPC}," in text
        or NO_SPACE in text.lower()
    ):
        return NO_SPACE
    return f"storage error ({text.splitlines()[0][:200] if text else type(err).__name__})"


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer may still use on ``folder``'s file system."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def space_shortfall(folder: Path, need_bytes: int) -> str | None:
    """``No space left on device: ...`` when ``folder`` has less than ``need_bytes`` free, else None.

    A task that died of a full disk often cannot say so: its log is on the same disk.
    """
    free = free_bytes(folder)
    if free >= need_bytes:
        return None
    return (
        f"No space left on device: {folder} has {free / 2**20:,.1f} MiB free; what is unfinished needs "
        f"about {need_bytes / 2**20:,.0f} MiB"
    )


def tmp_path(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed to ``path``."""
    return path.with_name(path.name + TMP_SUFFIX)


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush ``path``'s bytes to the disk: a rename after this cannot expose a file with holes."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def commit(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it onto ``final`` and fsync the folder."""
    fsync_file(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    tmp.write_text(text, encoding="utf-8")
    commit(tmp, path)


@contextlib.contextmanager
def removed_on_error(path: Path) -> Iterator[Path]:
    """Yield ``path``; delete it if the block raises, so no half-written file survives."""
    try:
        yield path
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def sha256_and_fsync(path: Path) -> str:
    """Hash ``path`` in a thread while fsync waits on the disk: the two overlap."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(sha256_file, path)
        fsync_file(path)
        return digest.result()


def commit_with_sidecar(tmp: Path, final: Path) -> str:
    """Hash and fsync ``tmp``, write ``final``'s .sha256 sidecar, rename ``tmp`` onto ``final``.

    Returns the hex digest. The sidecar is written first: a final name always has its sidecar.
    """
    from kit.format import sidecar_path, sidecar_text

    digest = sha256_and_fsync(tmp)
    write_text(sidecar_path(final), sidecar_text(digest, final))
    os.replace(tmp, final)
    fsync_dir(final.parent)
    return digest


def sha256_file(path: Path, block_bytes: int = 8 << 20) -> str:
    """Hex SHA-256 of a file, read in blocks (memory does not grow with the file)."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(block_bytes)
        view = memoryview(buf)
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()
