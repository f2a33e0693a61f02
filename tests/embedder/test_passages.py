"""Passages (PASSAGES=1): windows and spans as invariants over random inputs, then with the real
tokenizer and model: each window is what the tokenizer gives for its span, each passage vector is
``SentenceTransformer.encode`` of its span, each document vector the token-weighted mean of its passages."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from embedder.config import EmbedIdentity
from embedder.encode import TextEncoder
from embedder.passagefeed import PassageCollator
from embedder.passages import ChunkPassages, WindowPlan, concat, cut, interleave, spans
from jobs.demo import vital_articles
from kit.corpusfile import passage_costs
from kit.errors import ConfigError
from kit.passagefile import Rules, structure_problems, weighted_mean
from kit.format import PASSAGE_DOCUMENT, PASSAGE_INDEX, PASSAGE_SPAN, PASSAGE_TOKENS
from tests.conftest import cosine_rows


@st.composite
def documents(draw):
    """A document as token word-starts: n tokens, words of 1 to 40 tokens (a few far longer), a plan."""
    room = draw(st.integers(4, 300))
    overlap = draw(st.integers(0, (room - 1) // 2))
    sizes = draw(st.lists(st.one_of(st.integers(1, 40), st.integers(1, 3 * room)), min_size=1, max_size=60))
    starts = np.cumsum([0, *sizes])[:-1]
    return int(sum(sizes)), starts, WindowPlan(room, overlap)


@given(documents())
def test_windows_cover_every_token_within_the_window_and_overlap_as_asked(doc):
    n, starts, plan = doc
    word_start = lambda i: int(starts[np.searchsorted(starts, i, side="right") - 1])  # noqa: E731
    windows = cut(n, plan, word_start)
    assert windows[0][0] == 0 and windows[-1][1] == n
    for (a0, b0), (a1, b1) in zip(windows, windows[1:]):
        assert a1 - a0 >= plan.room / 2  # at most 2n / room + 1 windows: nothing quadratic
        assert a1 <= b0 - plan.overlap and b1 > b0  # no gap: the overlap is at least OVERLAP
    for k, (a, b) in enumerate(windows):
        assert 0 < b - a <= plan.room or n == 0
        for edge in (a, b) if 0 < k < len(windows) - 1 else ():
            ws = word_start(edge)  # an edge inside a word only where its start is out of reach
            assert edge == ws or edge - ws > plan.reach or ws - plan.overlap <= a


@given(documents())
def test_spans_tile_the_text_half_open(doc):
    n, starts, plan = doc
    windows = cut(n, plan, lambda i: int(starts[np.searchsorted(starts, i, side="right") - 1]))
    chars = np.cumsum(np.r_[3, np.arange(n) % 5 + 1])  # token i starts at chars[i]; 3 leading spaces
    text_len = int(chars[-1]) + 2
    span = spans(windows, n, lambda i: int(chars[i]), text_len)
    assert span[0, 0] == 0 and span[-1, 1] == text_len and (span[:, 0] < span[:, 1]).all()
    assert (span[1:, 0] <= span[:-1, 1]).all() and (span[1:, 0] > span[:-1, 0]).all()
    if plan.overlap == 0:
        assert (span[1:, 0] == span[:-1, 1]).all()


def test_a_window_plan_refuses_an_overlap_of_half_the_window():
    with pytest.raises(ValueError):
        WindowPlan(254, 127)
    with pytest.raises(
        ConfigError, match="OVERLAP=127 tokens: windows of 256 tokens take an overlap from 0 to 126"
    ):
        EmbedIdentity(model="m", passages=True, overlap=127, max_seq_length=256)
    assert EmbedIdentity(model="m", passages=True, overlap=126).passage_overlap(256) == 126
    with pytest.raises(ConfigError, match="add PASSAGES=1"):
        EmbedIdentity(model="m", overlap=16)
    assert EmbedIdentity(model="m", passages=True).passage_overlap(256) == 32  # a window / 8
    assert EmbedIdentity(model="m").passage_overlap(256) is None


def test_the_document_vector_is_the_token_weighted_mean():
    emb = np.array([[1, 0], [0, 1], [3, 4], [1, 1]], dtype=np.float32)
    ptr, tokens = np.array([0, 2, 3, 4]), np.array([3, 1, 0, 5])
    np.testing.assert_allclose(weighted_mean(emb, ptr, tokens, False), [[0.75, 0.25], [3, 4], [1, 1]])
    unit = weighted_mean(emb, ptr, tokens, True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1, rtol=1e-6)


def test_passages_of_two_sources_interleave_in_document_order():
    a = ChunkPassages(
        np.array([0, 2, 3]), np.array([[0, 5], [4, 9], [0, 3]]), np.array([5, 5, 3], dtype=np.int32)
    )
    b = ChunkPassages(np.array([0, 1]), np.array([[0, 7]]), np.array([7], dtype=np.int32))
    both = interleave(np.array([False, True, False]), a, b)
    assert both.ptr.tolist() == [0, 2, 3, 4] and both.span[:, 1].tolist() == [5, 9, 7, 3]
    assert both.index().tolist() == [0, 1, 0, 0] and both.document().tolist() == [0, 0, 1, 2]
    assert concat([a, b]).ptr.tolist() == [0, 2, 3, 4]


def _meta(span, tokens=None):
    span = np.asarray(span, dtype=np.int64)
    return {
        PASSAGE_DOCUMENT: np.zeros(len(span), dtype=np.int64) + 7,
        PASSAGE_INDEX: np.arange(len(span), dtype=np.int32),
        PASSAGE_SPAN: span,
        PASSAGE_TOKENS: np.full(len(span), 10 if tokens is None else tokens, dtype=np.int32),
    }


def test_the_proof_names_a_gap_a_missing_overlap_a_short_end_and_a_document_without_passages():
    ptr, lengths = np.array([0, 3]), np.array([30])
    ok = _meta([[0, 12], [10, 22], [20, 30]])
    assert structure_problems(ptr, 7, ok, Rules(256, 4), lengths) == []
    gap = structure_problems(ptr, 7, _meta([[0, 12], [14, 22], [20, 30]]), Rules(256, 4), lengths)
    assert gap == [(7, 1, "passage 1 [14, 22) leaves characters [12, 14) in no passage")]
    touching = structure_problems(ptr, 7, _meta([[0, 10], [10, 20], [20, 30]]), Rules(256, 4), lengths)
    assert [what for *_, what in touching][0].endswith("does not overlap the previous one (OVERLAP=4)")
    assert structure_problems(ptr, 7, _meta([[0, 10], [10, 20], [20, 30]]), Rules(256, 0), lengths) == []
    short = structure_problems(ptr, 7, ok, Rules(256, 4), np.array([31]))
    assert short == [(7, 2, "passage 2 [20, 30) ends at 30, not at the text's end 31")]
    missing = structure_problems(np.array([0, 3, 3]), 7, ok, Rules(256, 4), np.array([30, 5]))
    assert missing == [(8, 0, "has no passage")]


def test_passage_costs_count_the_whole_text_and_the_overlaps():
    costs = passage_costs(np.array([100.0, 254.0, 1000.0]), 256, 32)
    assert costs[0] == 100 + 10 and costs[1] == 254 + 10  # one window: its text and its own share
    assert costs[2] == 1000 + 4 * 32 + 5 * 10  # 5 windows: 4 overlaps


def tricky_texts() -> list[str]:
    rng = random.Random(3)
    long = "\n\n".join(a["text"] for a in vital_articles(40))
    return [
        long[:20000],
        ("Ça marche très bien — naïve café 東京都 😀 Короткий текст. don't-stop " * 120).strip(),
        " ".join(str(rng.randint(0, 10**6)) for _ in range(1500)),
        "Pneumonoultramicroscopicsilicovolcanoconiosis" * 200,
        "A short one.",
        "   spaces around   ",
    ]


@pytest.mark.parametrize("prompt", ["", "query: "])
def test_each_window_is_what_the_tokenizer_gives_for_its_span(st_model, prompt):
    texts = tricky_texts()
    tok = PassageCollator(st_model, prompt, 32).tokenize(texts)
    passages = tok.passages
    assert tok.lengths.max() <= st_model.max_seq_length and tok.truncated == 0
    assert np.diff(passages.ptr).tolist()[3:] == [1, 1, 1] and np.diff(passages.ptr)[0] > 10
    spans_text = passages.texts(texts, range(passages.count))
    for row, span_text in enumerate(spans_text):
        expected = st_model.tokenizer(prompt + span_text)["input_ids"]
        assert tok.ids[row].tolist() == expected, (row, span_text[:60])
        text_only = st_model.tokenizer(span_text, add_special_tokens=False)["input_ids"]
        assert passages.tokens[row] == len(text_only)


def test_passage_vectors_equal_encode_of_their_spans_and_documents_their_mean(st_model):
    texts = tricky_texts()
    encoder = TextEncoder(st_model, prompt="query: ", normalize=False, max_tokens=2048, overlap=16)
    [(_, _, docs, passages)] = list(encoder.encode_documents([(0, texts, None)]))
    reference = st_model.encode(passages.texts(texts, range(passages.count)), prompt="query: ")
    assert cosine_rows(passages.embeddings, reference).min() >= 0.9999
    np.testing.assert_allclose(
        docs, weighted_mean(passages.embeddings, passages.ptr, passages.tokens, True), atol=1e-6
    )
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1, rtol=1e-5)  # the model's Normalize module
    np.testing.assert_array_equal(encoder.encode(texts), docs)
