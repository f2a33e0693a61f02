"""A PASSAGES=1 shard: passages flushed with their documents, resumed at a document, checked on commit."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from embedder.passages import ChunkPassages
from embedder.shard import ShardWriter
from kit.errors import ShardError
from kit.format import PASSAGE_CHECKSUMS, PASSAGE_EMBEDDINGS, PASSAGE_PTR
from kit.passagefile import Rules, check_shard
from kit.shardfile import ShardSpec
from tests.fixtures.synthetic import identity, vectors

SPEC = ShardSpec(0, 100, 130)
IDENT = identity(8, "f" * 64, passage_window=256, passage_overlap=0)


def chunk(lo: int, hi: int) -> tuple[np.ndarray, list[str], ChunkPassages]:
    """Documents [lo, hi): document i has i % 3 + 1 passages of 10 characters, touching."""
    counts = np.array([i % 3 + 1 for i in range(lo, hi)])
    ptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    k = np.arange(ptr[-1]) - np.repeat(ptr[:-1], counts)
    span = np.column_stack([k * 10, k * 10 + 10]).astype(np.int64)
    emb = vectors(lo * 10, lo * 10 + int(ptr[-1]), 8)
    passages = ChunkPassages(ptr, span, np.full(len(span), 4, dtype=np.int32), emb)
    docs = np.stack([emb[ptr[i] : ptr[i + 1]].mean(0) for i in range(hi - lo)])
    return docs, [f"doc-{i}" for i in range(lo, hi)], passages


def written(path) -> dict[str, np.ndarray]:
    with h5py.File(path) as h5:
        out = {}
        h5.visititems(
            lambda name, item: out.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None
        )
        return out


def test_passages_are_counted_with_their_documents_and_resume_at_a_document(tmp_path):
    whole = tmp_path / "whole" / "shard-00000.h5"
    writer = ShardWriter(whole, SPEC, IDENT, {})
    for lo in range(100, 130, 6):
        writer.append(*chunk(lo, lo + 6))
    writer.commit({})

    path = tmp_path / "killed" / "shard-00000.h5"
    writer = ShardWriter(path, SPEC, IDENT, {})
    writer.append(*chunk(100, 106))
    writer.append(*chunk(106, 112))
    docs, ids, passages = chunk(112, 118)
    writer.passages.write(writer.h5, passages, 112)  # a kill after the passages, before their documents
    writer.close()

    resumed = ShardWriter(path, SPEC, IDENT, {})
    assert resumed.resumed_from == 12
    assert (
        resumed.h5[PASSAGE_EMBEDDINGS].shape[0] == resumed.h5[PASSAGE_PTR][-1] == 24
    )  # 12 docs: 4+4 x (1+2+3)
    for lo in range(112, 130, 6):
        resumed.append(*chunk(lo, lo + 6))
    resumed.commit({})
    a, b = written(whole), written(path)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_passage_block_whose_digest_does_not_match_is_recomputed_from_a_verified_document(tmp_path):
    path = tmp_path / "shard-00000.h5"
    writer = ShardWriter(path, SPEC, IDENT, {})
    writer.append(*chunk(100, 106))
    writer.append(*chunk(106, 112))
    writer.h5[PASSAGE_CHECKSUMS][0] = 1  # a kill between a block's new digest and rows_done
    writer.close()
    resumed = ShardWriter(path, SPEC, IDENT, {})
    assert resumed.resumed_from == 0 and resumed.h5[PASSAGE_EMBEDDINGS].shape[0] == 0
    for lo in range(100, 130, 6):
        resumed.append(*chunk(lo, lo + 6))
    header = resumed.commit({})
    with h5py.File(header.path) as h5:
        assert check_shard(h5, "shard", 100, 30, 8, Rules(256, 0)) == 60


def test_a_chunk_without_its_passages_is_refused_and_a_damaged_passage_fails_the_commit(tmp_path):
    path = tmp_path / "shard-00000.h5"
    writer = ShardWriter(path, SPEC, IDENT, {})
    docs, ids, passages = chunk(100, 130)
    with pytest.raises(ShardError, match="does not come with its passages"):
        writer.append(docs, ids)
    writer.append(docs, ids, passages)
    writer.h5[PASSAGE_EMBEDDINGS][5] = 0
    with pytest.raises(ShardError, match=r"passages \[5, 6\) have all-zero vectors"):
        writer.commit({})
