"""PASSAGES=1: a chunk's documents tokenised whole, once, and cut into windows (the rows of the batches).

``PassageCollator`` is ``FastCollator`` with truncation off: one call of the Rust tokenizer over the
chunk's ``prompt + text`` (``encode_batch``: ids, and offsets and word indices kept in Rust, looked up
only at window edges). Each window is the document's leading special and prompt tokens, a run of its
text tokens and its trailing special tokens, so it holds at most ``max_seq_length`` tokens and is what the
tokenizer gives for the window's span with the run's prompt (docs/PASSAGES.md). The batches are formed
over the windows, longest first, as over any rows; ``embedder.encode`` pools them back into documents.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from embedder.feeder import FastCollator, Tokenized, can_tokenize_once
from embedder.passages import ChunkPassages, WindowPlan, cut, spans
from kit.errors import ConfigError


class WindowIds:
    """The token ids of every window of a chunk, built on demand from each document's one encoding."""

    def __init__(self, docs: list[np.ndarray], parts: np.ndarray):
        self.docs = docs  # int64 ids of each document: head (special + prompt), text tokens, tail
        self.parts = parts  # int64 [P, 5]: document, head length, first and end text token, tail length

    def __len__(self) -> int:
        return len(self.parts)

    def __getitem__(self, row: int) -> np.ndarray:
        d, head, a, b, tail = (int(v) for v in self.parts[row])
        ids = self.docs[d]
        return np.concatenate([ids[:head], ids[head + a : head + b], ids[len(ids) - tail :]])

    def concat(self, rows: np.ndarray) -> np.ndarray:
        """The ids of ``rows`` one after another (what ``_padded`` and ``_packed`` place), int64."""
        return np.concatenate([self[int(r)] for r in rows]) if len(rows) else np.zeros(0, dtype=np.int64)


class PassageCollator(FastCollator):
    """Tokenise each document once, whole; cut it into windows; pad or pack batches of windows."""

    def __init__(self, model, prompt: str, overlap: int):
        if not can_tokenize_once(model):
            raise ConfigError(
                "PASSAGES=1 needs a model whose texts the kit tokenises itself, once (a fast tokenizer, no chat "
                "template or custom processor arguments); this model's are not. Run without PASSAGES."
            )
        super().__init__(model, prompt)
        backend = self.tokenizer.backend_tokenizer  # this collator's own copy
        backend.no_truncation()
        self._encode_whole = backend.encode_batch  # with offsets: the spans come from them
        sample = backend.encode(prompt + "a")
        special = sample.special_tokens_mask
        self.head_special = next((i for i, m in enumerate(special) if not m), len(special))
        self.tail_special = next((i for i, m in enumerate(reversed(special)) if not m), 0)
        self.zero_types = not any(sample.type_ids)  # a single text's type ids are all 0 (BERT's template)
        prompt_tokens = len(backend.encode(prompt, add_special_tokens=False).ids) if prompt else 0
        room = self.max_len - self.head_special - self.tail_special - prompt_tokens
        if room < 1 or 2 * overlap >= room:
            raise ConfigError(
                f"PASSAGES=1 with OVERLAP={overlap}: a window of {self.max_len} tokens holds {room} tokens of "
                f"text after {self.head_special + self.tail_special} special and {prompt_tokens} prompt tokens; "
                f"OVERLAP must stay below half of that ({max(room - 1, 0) // 2} at most)."
            )
        self.plan = WindowPlan(room, overlap)
        # Where the text starts when the prompt ends on a word's edge; where the prompt runs into a
        # document's first word, that document gets a plan of its own.
        self.plan_head = self.head_special + prompt_tokens

    def tokenize(self, texts: list[str]) -> Tokenized:
        """Every window of every document in ``texts``, with the documents' passages (spans, tokens)."""
        encodings = self._encode_whole([self.prompt + t for t in texts])
        docs, types, parts, span_list = [], [], [], []
        for d, (text, enc) in enumerate(zip(texts, encodings)):
            ids = np.array(enc.ids, dtype=np.int64)
            head, tail = self._head(enc, len(ids)), self.tail_special
            n = len(ids) - head - tail
            plan = (
                self.plan
                if head == self.plan_head
                else WindowPlan(self.max_len - head - tail, self.plan.overlap)
            )
            windows = cut(n, plan, partial(_boundary, enc, head, reach=plan.reach))
            span_list.append(spans(windows, n, partial(_char_start, enc, head, len(self.prompt)), len(text)))
            ab = np.asarray(windows, dtype=np.int64)
            parts.append(
                np.column_stack([np.full(len(ab), d), np.full(len(ab), head), ab, np.full(len(ab), tail)])
            )
            docs.append(ids)
            if not self.zero_types:
                types.append(np.array(enc.type_ids, dtype=np.int64))
        table = np.concatenate(parts) if parts else np.zeros((0, 5), dtype=np.int64)
        tokens = (table[:, 3] - table[:, 2]).astype(np.int32)
        passages = ChunkPassages(
            np.r_[0, np.cumsum([len(p) for p in parts], dtype=np.int64)].astype(np.int64),
            np.concatenate(span_list) if span_list else np.zeros((0, 2), dtype=np.int64),
            tokens,
        )
        return Tokenized(
            tokens.astype(np.int64) + table[:, 1] + table[:, 4],  # window lengths, special tokens counted
            0,  # nothing is cut off
            WindowIds(docs, table),  # type: ignore[arg-type]  # a sequence of id arrays, as collate reads it
            None if self.zero_types else WindowIds(types, table),  # type: ignore[arg-type]
            passages=passages,
        )

    def _head(self, enc, length: int) -> int:
        """Leading special and prompt tokens of one encoding: those that start inside the prompt."""
        head = self.head_special
        limit = length - self.tail_special
        while head < limit and enc.token_to_chars(head)[0] < len(self.prompt):
            head += 1
        return head


def _boundary(enc, head: int, i: int, *, reach: int) -> int:
    """The text token at or before text token ``i`` where a window may start or end: after whitespace within
    ``reach`` tokens (a word as a reader sees it), else the start of the tokenizer's word that holds ``i``."""
    if i - reach <= 0:
        return max(_word_start(enc, head + i) - head, 0) if reach == 0 else _spaced(enc, head, i, 0)
    return _spaced(enc, head, i, i - reach)


def _spaced(enc, head: int, i: int, floor: int) -> int:
    """The last text token in ``(floor, i]`` with characters between it and the token before (whitespace),
    ``floor`` itself when that is the text's first token, else the start of ``i``'s tokenizer word."""
    for j in range(i, floor, -1):
        if enc.token_to_chars(head + j)[0] > enc.token_to_chars(head + j - 1)[1]:
            return j
    return 0 if floor == 0 else max(_word_start(enc, head + i) - head, 0)


def _word_start(enc, token: int) -> int:
    """The first token of the word that holds ``token`` (the tokenizer's pre-tokenised words)."""
    word = enc.token_to_word(token)
    if word is None:
        return token
    span = enc.word_to_tokens(word)
    return token if span is None else min(int(span[0]), token)


def _char_start(enc, head: int, prompt_chars: int, i: int) -> int:
    """Where text token ``i`` starts in the document's text (the prompt's characters taken off)."""
    return int(enc.token_to_chars(head + i)[0]) - prompt_chars
