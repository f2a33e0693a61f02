"""The merge's part of REUSE=: which rows of the merged file took their vectors from an earlier file."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Iterable

import numpy as np

from kit.h5files import open_h5
from kit.reuse import NOT_REUSED
from kit.reusefile import REUSED, read_map


def record_in_output(out_path: Path, run_dir: Path, shard_attrs: Iterable[tuple[int, int, dict]]) -> None:
    """Write the per-row ``reused`` flags and the reuse attributes into the merged file being written.

    ``shard_attrs``: (start, stop, attrs) of each merged shard; rows count as reused only in shards
    that say they copied from this same file.
    """
    found = read_map(run_dir)
    if found is None:
        return
    source_rows, attrs = found
    reused = source_rows != NOT_REUSED
    for start, stop, shard in shard_attrs:
        if shard.get("reuse_sha256") != attrs["source_sha256"]:
            reused[start:stop] = False
    with open_h5(out_path, "a") as h5:
        h5.create_dataset(REUSED, data=reused.astype(np.uint8))
        h5.attrs.update(
            reuse_source=attrs["source"],
            reuse_source_sha256=attrs["source_sha256"],
            reused_rows=int(reused.sum()),
            computed_rows=int(len(reused) - reused.sum()),
        )
