"""Tokenise once: the batches built from the ids are exactly what sentence-transformers builds."""

import numpy as np
import pytest
import torch

from embedder.feeder import FastCollator, can_tokenize_once
from jobs.demo import vital_articles


@pytest.fixture(scope="module")
def texts():
    odd = ("y" * 200 + " ") * 30  # 200-char words are one [UNK] each: > 12 characters a token
    return [r["text"] for r in vital_articles(40)] + ["short", "a " * 600, "", odd]


@pytest.fixture
def fresh_model(model_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path), device="cpu", local_files_only=True)


def _assert_same(ours: dict, theirs: dict):
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(ours[key], value), key
        else:
            assert ours[key] == value, key


@pytest.mark.parametrize("prompt", ["", "query: "])
def test_padded_batches_equal_preprocess(st_model, texts, prompt):
    assert can_tokenize_once(st_model)
    collator = FastCollator(st_model, prompt)
    tok = collator.tokenize(texts)
    assert tok.truncated == 1 and int(tok.lengths.max()) == st_model.max_seq_length
    for rows in collator.batches(tok, 2048):
        theirs = st_model.preprocess([texts[i] for i in rows], prompt=prompt or None)
        _assert_same(collator.collate(tok, rows).features, theirs)


def test_left_padding_is_kept(fresh_model, texts):
    fresh_model.tokenizer.padding_side = "left"  # as decoder embedders (Qwen3-Embedding) have it
    collator = FastCollator(fresh_model, "")
    tok = collator.tokenize(texts)
    rows = np.array([0, len(texts) - 4, 5])
    _assert_same(collator.collate(tok, rows).features, fresh_model.preprocess([texts[i] for i in rows]))


def test_packed_batches_equal_the_flattened_preprocess(fresh_model, texts):
    """What Transformer.preprocess builds for flash attention, without needing a flash kernel here."""
    from transformers import DataCollatorWithFlattening

    first = fresh_model[0]
    first.data_collator = DataCollatorWithFlattening(
        return_seq_idx=True, return_flash_attn_kwargs=True, return_position_ids=True
    )
    first.can_flatten_inputs = True
    first._flatten_position_offset = 0
    collator = FastCollator(fresh_model, "")
    tok = collator.tokenize(texts)
    batches = collator.batches(tok, 3000)
    assert collator.packed and all(collator.collate(tok, b).tokens <= 3000 for b in batches if len(b) > 1)
    for rows in batches[:3]:
        _assert_same(collator.collate(tok, rows).features, fresh_model.preprocess([texts[i] for i in rows]))


def test_the_character_cut_keeps_the_ids_and_counts_truncated_rows_exactly(st_model):
    """Texts cut at a word boundary first: ids as the whole text's, truncation counted as on the whole text."""
    words = ["the", "antidisestablishmentarianism", "y" * 40, "a", "2026-12-02", "Zürich"]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=n)) for n in (120, 250, 253, 254, 255, 400, 2000)]
    texts += ["\n".join(["x" * 30] * 200), "é" * 5000]  # a cut at a newline; no whitespace at all
    collator = FastCollator(st_model, "")
    tok = collator.tokenize(texts)
    whole = st_model.tokenizer(texts, truncation=True, max_length=st_model.max_seq_length)["input_ids"]
    untruncated = st_model.tokenizer(texts)["input_ids"]
    assert [list(ids) for ids in tok.ids] == [list(ids) for ids in whole]
    assert tok.truncated == sum(len(ids) > st_model.max_seq_length for ids in untruncated)
