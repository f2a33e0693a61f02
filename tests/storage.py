"""A small real tmpfs for full-disk tests (the tests run as root), and a filler that leaves N bytes free."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from collections.abc import Iterator


@contextlib.contextmanager
def tmpfs(path: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of ``size_bytes`` at ``path`` for the block (fails loudly where mount is refused)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave_bytes: int) -> Path:
    """Write ``path/filler`` so that about ``leave_bytes`` stay free; delete it to free the space."""
    filler = path / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free_bytes(path) - leave_bytes))
    return filler
