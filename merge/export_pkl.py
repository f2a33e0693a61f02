"""make export-pkl: the seeds' wikipedia_merged.pkl dictionary, for downstream scripts that read it."""

from __future__ import annotations

import json
import pickle
from pathlib import Path


from kit import atomic
from kit.h5files import open_h5


def export_pkl(src: Path, dst: Path) -> Path:
    """Write the seeds' keys: embeddings, articles (id/title/url), total_articles, embedding_dim, model,
    timestamp, shape, quality_metrics, chunk_info. Loads the whole file: it is the seeds' format."""
    with open_h5(src) as h5:
        embeddings = h5["embeddings"][:]
        articles = [
            {"id": i, "title": t, "url": u}
            for i, t, u in zip(
                h5["ids"].asstr()[:], h5["titles"].asstr()[:], h5["urls"].asstr()[:], strict=True
            )
        ]
        data = {
            "embeddings": embeddings,
            "articles": articles,
            "total_articles": len(articles),
            "embedding_dim": int(h5.attrs["embedding_dim"]),
            "model": str(h5.attrs["model"]),
            "timestamp": str(h5.attrs["timestamp"]),
            "shape": tuple(embeddings.shape),
            "quality_metrics": json.loads(h5.attrs["quality_metrics"]),
            "chunk_info": json.loads(h5.attrs["chunk_info"]),
        }
    tmp = atomic.tmp_path(dst)
    with atomic.removed_on_error(tmp):
        with open(tmp, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        atomic.commit(tmp, dst)
    return dst
