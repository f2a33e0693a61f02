"""Whether a run's derived files are made from its current inputs: by what they record, not file times.

A copy of a run folder (``cp -r``, rsync without ``-t``) gives every file a new mtime in copy
order, so mtimes cannot say whether embeddings.h5 took the shards there now, or whether the map
and the export were drawn from this embeddings.h5. Each records what it was made from: the merge
each shard's commit id (``chunk_info``), the map and the exports the SHA-256 of embeddings.h5.
Files of older runs, which record nothing, are judged by mtime as before.
"""

from __future__ import annotations

import json
from pathlib import Path

from kit.errors import ShardError
from kit.format import sidecar_digest
from kit.h5files import open_h5
from kit.shardfile import COMMIT_ID, done_shards, read_header


def newer(made: Path, source: Path) -> bool:
    """``made`` exists and is not older than ``source`` (or ``source`` is missing): for unrecorded files."""
    return made.exists() and (not source.exists() or made.stat().st_mtime_ns >= source.stat().st_mtime_ns)


def merged_commits(output: Path) -> dict[str, str | None]:
    """Shard file name -> the commit id the merge of ``output`` took (None: not recorded)."""
    try:
        with open_h5(output, "r") as h5:
            chunks = json.loads(h5.attrs.get("chunk_info", "[]"))
    except (OSError, ValueError):
        return {}
    return {str(c.get("shard")): c.get(COMMIT_ID) for c in chunks}


def merge_is_current(run_dir: Path, output: Path, shard_path) -> bool:
    """embeddings.h5 exists and holds exactly the done shards as they are now."""
    if not output.exists():
        return False
    taken = merged_commits(output)
    for index in sorted(done_shards(run_dir)):
        shard = shard_path(index)
        try:
            commit = read_header(shard).attrs.get(COMMIT_ID)
        except ShardError:
            return False  # the merge names what is wrong with it
        recorded = taken.get(shard.name)
        if commit and recorded:
            if commit != recorded:
                return False
        elif not newer(output, shard):
            return False
    return True


def drawn_from_output(made: Path, recorded_sha256: str | None, output: Path) -> bool:
    """``made`` (a map, an export) exists and was made from ``output`` as it is now."""
    if not made.exists():
        return False
    current = sidecar_digest(output)
    if recorded_sha256 and current:
        return recorded_sha256 == current
    return newer(made, output)


def map_source(map_file: Path) -> str | None:
    """The SHA-256 of the embeddings.h5 a map.h5 was drawn from (None: not recorded)."""
    try:
        with open_h5(map_file, "r") as h5:
            return str(h5.attrs.get("source_sha256", "")) or None
    except OSError:
        return None
