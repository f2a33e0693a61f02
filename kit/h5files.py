"""How the kit opens its own HDF5 files: one locking policy, in this one place.

HDF5 locks every file it opens (``flock``, or ``fcntl`` where flock is missing) unless told not
to. The kit never depends on those locks: on many NFS, Lustre and GPFS mounts ``flock`` fails
(``unable to lock file, errno = 38``) or is a silent no-op, and inside one process HDF5 refuses to
open a file a second time with other locking flags than the open it already holds (``file locking
flag values don't match``). What keeps writers apart is the kit's own protocol instead: one
command at a time per run folder (``run.lock``, kit.runlock), every file written by one process
under a temporary name and renamed once complete (kit.atomic), and a shard's ``.tmp`` owned by the
one task of that shard. Readers only ever open final names, which nobody writes again in place.

So every ``h5py.File`` of the kit's files (corpus index, shards, ``embeddings.h5``, ``map.h5``,
``reuse.h5``, the exports' sources) is opened here, with HDF5's file locking off. A test walks the
packages and refuses any other ``h5py.File(`` call. docs/RELIABILITY.md, "Storage faults".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py

LOCKING = False  # h5py's ``locking=``: never take HDF5's flock/fcntl lock (see above)


def open_h5(path: Path | str, mode: str = "r", **kwargs: Any) -> h5py.File:
    """Open one of the kit's HDF5 files under the kit's locking policy (no HDF5 file lock).

    Args:
        path: the file.
        mode: h5py's mode: ``r`` (read), ``a`` (read/write, create), ``w`` (create, truncate).
        **kwargs: any other ``h5py.File`` keyword (``libver``, ``rdcc_nbytes``, ...).

    Returns:
        The open ``h5py.File`` (a context manager).
    """
    return h5py.File(path, mode, locking=LOCKING, **kwargs)
