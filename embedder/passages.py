"""Passages (PASSAGES=1): a document cut into token windows, each with its exact character span.

Pure: the windows are computed from one tokenizer encoding of the whole document (the feeder's one
call, ``embedder.passagefeed``), through two look-ups made only at window edges: the first token of the
word a token belongs to, and the character where a token starts. No text is tokenised again.

A window holds at most ``room`` tokens of the text (the model's ``max_seq_length`` less its special
tokens and the prompt's); consecutive windows share ``overlap`` tokens. Both edges of a window move back
to the start of a word when one is within ``WindowPlan.reach`` tokens, so no window starts or ends inside
a word (where a single word is longer than that, the edge stays on a token boundary). Each window starts
at least ``room / 2`` tokens after the previous one: a document of n tokens has at most 2n / room + 1. Passage k's span is
``[start, end)`` in the document's text: the first starts at 0, the last ends at ``len(text)``, and
passage k ends where the token after its last one starts, so each span starts at or before the
previous one's end and no character is left out. For a tokenizer that splits words at whitespace and
punctuation without keeping the whitespace (WordPiece, as BERT's and all-MiniLM's), ``text[start:end]``
tokenises to exactly the window's tokens: its vector is ``SentenceTransformer.encode(text[start:end])``.

A document's vector is the token-weighted mean of its passages' vectors (weights: each passage's text
tokens, at least 1), L2-normalised where the model normalises (``document_vectors``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kit.passagefile import weighted_mean

REACH_SHARE = 4  # an edge moves back at most (room - 2 * overlap) // REACH_SHARE tokens to a word's start


@dataclass(frozen=True)
class WindowPlan:
    """How a document's text tokens are cut: ``room`` tokens a window, ``overlap`` shared with the next."""

    room: int  # text tokens a window holds (max_seq_length less special and prompt tokens)
    overlap: int  # tokens shared by consecutive windows (0 <= overlap < room / 2)

    def __post_init__(self) -> None:
        if self.room < 1 or self.overlap < 0 or 2 * self.overlap >= self.room:
            raise ValueError(f"windows of {self.room} tokens cannot overlap by {self.overlap}")

    @property
    def reach(self) -> int:
        """How far back (tokens) an edge may move to the start of a word: a quarter of what a window
        advances without moving (``room - 2 * overlap``), so each window starts at least ``room / 2``
        tokens after the previous one (edges moved back by at most twice this, plus the overlap)."""
        return (self.room - 2 * self.overlap) // REACH_SHARE


def cut(n: int, plan: WindowPlan, word_start: Callable[[int], int]) -> list[tuple[int, int]]:
    """The windows over ``n`` text tokens, as half-open token ranges ``[a, b)``, in order.

    Args:
        n: the document's text tokens (special and prompt tokens excluded).
        plan: window size and overlap.
        word_start: token i -> the first token of the word that holds it (i itself at a word's start).

    Returns:
        At least one window; the first starts at 0 and the last ends at ``n``; each holds at most
        ``plan.room`` tokens and starts after the previous one's start and at or before its end.
    """
    windows, a = [], 0
    while True:
        b = a + plan.room
        if b >= n:
            windows.append((a, n))
            return windows
        ws = word_start(b)
        if b - ws <= plan.reach and ws - plan.overlap > a:  # end before the word that the edge cuts
            b = ws
        windows.append((a, b))
        nxt = b - plan.overlap
        ws = word_start(nxt)
        a = ws if nxt - ws <= plan.reach and ws > a else nxt


def spans(
    windows: Sequence[tuple[int, int]], n: int, char_start: Callable[[int], int], text_len: int
) -> np.ndarray:
    """Character spans ``[start, end)`` of ``windows`` (token ranges over ``n`` tokens), int64 [k, 2].

    Passage k starts where its first token starts (the first passage at 0) and ends where the token after
    its last one starts (the last passage at ``text_len``): whitespace between words belongs to the
    passage before it.
    """
    out = np.empty((len(windows), 2), dtype=np.int64)
    for k, (a, b) in enumerate(windows):
        out[k, 0] = 0 if k == 0 else char_start(a)
        out[k, 1] = text_len if b >= n else char_start(b)
    return out


@dataclass
class ChunkPassages:
    """The passages of a chunk of consecutive documents (documents numbered from 0 in the chunk).

    ``ptr`` is a CSR pointer: document i's passages are rows ``[ptr[i], ptr[i + 1])``.
    """

    ptr: np.ndarray  # int64 [docs + 1]
    span: np.ndarray  # int64 [P, 2]: [start, end) characters into the document's text
    tokens: np.ndarray  # int32 [P]: text tokens of each passage (special and prompt tokens excluded)
    embeddings: np.ndarray | None = None  # float32 [P, dim] once encoded

    @property
    def count(self) -> int:
        """Passages in the chunk."""
        return int(self.ptr[-1])

    @property
    def docs(self) -> int:
        """Documents in the chunk."""
        return len(self.ptr) - 1

    def document(self) -> np.ndarray:
        """int64 [P]: the document (0-based in the chunk) of each passage."""
        return np.repeat(np.arange(self.docs, dtype=np.int64), np.diff(self.ptr))

    def index(self) -> np.ndarray:
        """int32 [P]: each passage's index within its document (0, 1, ...)."""
        return (np.arange(self.count, dtype=np.int64) - np.repeat(self.ptr[:-1], np.diff(self.ptr))).astype(
            np.int32
        )

    def texts(self, texts: Sequence[str], rows: Sequence[int]) -> list[str]:
        """The text of each passage in ``rows``: ``texts[document][start:end]``."""
        doc = np.searchsorted(self.ptr, np.asarray(rows), side="right") - 1
        return [texts[d][self.span[r, 0] : self.span[r, 1]] for d, r in zip(doc.tolist(), rows)]

    def select(self, docs: np.ndarray) -> ChunkPassages:
        """The passages of the documents ``docs`` (indices in this chunk, increasing), renumbered from 0."""
        counts = np.diff(self.ptr)[docs]
        ranges = [np.arange(self.ptr[d], self.ptr[d + 1], dtype=np.int64) for d in docs]
        rows = np.concatenate(ranges) if ranges else np.zeros(0, dtype=np.int64)
        return ChunkPassages(
            np.r_[0, np.cumsum(counts)].astype(np.int64),
            self.span[rows],
            self.tokens[rows],
            None if self.embeddings is None else self.embeddings[rows],
        )


def document_vectors(passages: ChunkPassages, normalize: bool) -> np.ndarray:
    """float32 [docs, dim]: each document's token-weighted mean of its passages' vectors
    (``kit.passagefile.weighted_mean``: the merge checks the file with the same function)."""
    assert passages.embeddings is not None  # called once the chunk is encoded
    return weighted_mean(passages.embeddings, passages.ptr, passages.tokens, normalize)


def concat(parts: Sequence[ChunkPassages]) -> ChunkPassages:
    """The passages of consecutive chunks as one (documents in order)."""
    ptrs, offset = [np.zeros(1, dtype=np.int64)], 0
    for part in parts:
        ptrs.append(part.ptr[1:] + offset)
        offset += part.count
    embeddings = [p.embeddings for p in parts]
    return ChunkPassages(
        np.concatenate(ptrs),
        np.concatenate([p.span for p in parts]).reshape(-1, 2),
        np.concatenate([p.tokens for p in parts]).astype(np.int32),
        None if any(e is None for e in embeddings) else np.concatenate(embeddings),  # type: ignore[arg-type]
    )


def interleave(taken: np.ndarray, computed: ChunkPassages, copied: ChunkPassages) -> ChunkPassages:
    """The passages of a chunk whose documents come from two sources, in document order.

    ``taken``: bool [docs], True where document i's passages are ``copied``'s next document (REUSE=),
    False where they are ``computed``'s next one.
    """
    order: list[tuple[ChunkPassages, int]] = []
    counters = {True: 0, False: 0}
    for flag in taken.tolist():
        order.append((copied if flag else computed, counters[flag]))
        counters[flag] += 1
    return concat([source.select(np.array([d])) for source, d in order])
