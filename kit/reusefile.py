"""reuse.h5, the run's match of its rows to an earlier file's (REUSE=): read by the tasks and the merge.

Written by ``embedder.reuse`` at plan/submit; the layout is in docs/FORMAT.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kit.corpusfile import corpus_info
from kit.format import RunPaths
from kit.h5files import open_h5

SOURCE_ROW = "source_row"  # reuse.h5: per row of this corpus, the earlier file's row, or -1 (computed)
REUSED = "reused"  # embeddings.h5: 1 where the row's vector was copied from the earlier file


def read_map(run_dir: Path) -> tuple[np.ndarray, dict[str, Any]] | None:
    """(source_row, attrs) of the run's reuse.h5, or None without one or when it is for another corpus."""
    paths = RunPaths.of(run_dir)
    if not paths.reuse.is_file():
        return None
    with open_h5(paths.reuse) as h5:
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in h5.attrs.items()}
        if attrs.get("corpus_fingerprint") != corpus_info(paths.corpus).fingerprint:
            return None  # the corpus changed since (REDO=all): nothing of it is reused
        return h5[SOURCE_ROW][:], attrs
