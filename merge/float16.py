"""A float16 copy of embeddings.h5 for transfer: half the bytes, cosine to float32 >= 0.99999."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from kit import atomic
from kit.format import PASSAGE_EMBEDDINGS, RunPaths, sidecar_path
from kit.h5files import open_h5

BLOCK_ROWS = 16384


def write_float16_copy(run_dir: Path) -> Path:
    """Stream the run's embeddings.h5 into embeddings.float16.h5 (atomic, with its own .sha256).
    The vectors (documents', and passages' with PASSAGES=1) in float16; other datasets copied as they are."""
    src, dst = RunPaths.of(run_dir).output, RunPaths.of(run_dir).float16_output
    tmp = atomic.tmp_path(dst)
    with atomic.removed_on_error(tmp):
        with open_h5(src) as fin, open_h5(tmp, "w") as fout:
            vectors = [n for n in ("embeddings", PASSAGE_EMBEDDINGS) if n in fin]  # PASSAGES=1: both levels
            for name in vectors:
                emb = fin[name]
                out = fout.create_dataset(name, shape=emb.shape, dtype=np.float16)
                for lo in range(0, emb.shape[0], BLOCK_ROWS):
                    out[lo : lo + BLOCK_ROWS] = emb[lo : lo + BLOCK_ROWS].astype(np.float16)
            fin.visititems(lambda name, item: _copy(fin, fout, name, item, vectors))
            fout.attrs.update(dict(fin.attrs))
            fout.attrs["transfer_dtype"] = "float16"
            fout.attrs["source_sha256"] = sidecar_path(src).read_text().split()[0]
        atomic.commit_with_sidecar(tmp, dst)
    return dst


def _copy(fin: h5py.File, fout: h5py.File, name: str, item, vectors: list[str]) -> None:
    """Copy one dataset of ``fin`` as it is (groups are made on the way), unless it is one of the vectors."""
    if isinstance(item, h5py.Dataset) and name not in vectors:
        fin.copy(item, fout.require_group(item.parent.name), name.rsplit("/", 1)[-1])
