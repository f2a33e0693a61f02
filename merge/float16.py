"""A float16 copy of embeddings.h5 for transfer: half the bytes, cosine to float32 >= 0.99999."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from kit import atomic
from kit.format import sidecar_path

BLOCK_ROWS = 16384


def float16_path(path: Path) -> Path:
    """``embeddings.h5`` -> ``embeddings.float16.h5``."""
    return path.with_name(path.stem + ".float16" + path.suffix)


def write_float16_copy(src: Path) -> Path:
    """Stream ``src`` into its float16 copy (atomic, with its own .sha256). Other datasets copied as is."""
    dst = float16_path(src)
    tmp = atomic.tmp_path(dst)
    with atomic.removed_on_error(tmp):
        with h5py.File(src, "r") as fin, h5py.File(tmp, "w") as fout:
            emb = fin["embeddings"]
            out = fout.create_dataset("embeddings", shape=emb.shape, dtype=np.float16)
            for lo in range(0, emb.shape[0], BLOCK_ROWS):
                out[lo : lo + BLOCK_ROWS] = emb[lo : lo + BLOCK_ROWS].astype(np.float16)
            for name in fin:
                if name != "embeddings":
                    fin.copy(fin[name], fout, name)
            fout.attrs.update(dict(fin.attrs))
            fout.attrs["transfer_dtype"] = "float16"
            fout.attrs["source_sha256"] = sidecar_path(src).read_text().split()[0]
        atomic.commit_with_sidecar(tmp, dst)
    return dst
