"""Model inputs for each batch: every text tokenised once, as the model will see it.

``FastCollator`` tokenises a chunk of texts in one call of the model's own (fast) tokenizer,
truncated to ``max_seq_length`` exactly as sentence-transformers' ``Transformer.preprocess``
does, and then builds each batch's tensors from those ids with numpy: padded to the batch's
longest row on the tokenizer's padding side, or packed into one flat sequence with the
module's own ``DataCollatorWithFlattening`` when the model was loaded for flash attention.
Models this cannot mirror (chat templates, custom processor arguments, slow tokenizers) get
``PreprocessCollator``, which calls ``model.preprocess`` per batch (tokenising twice, as before).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from embedder.batching import computed_tokens, packed_batches, token_budget_batches

CHARS_PER_TOKEN_BOUND = 12  # tokenise at most this many characters per allowed token
# A text is first cut at a word boundary before max_seq_length x this many characters (English runs
# 4 to 5 characters a token): tokenising a long text costs no more than its first window. A row whose
# cut text gives too few tokens is tokenised again whole, so truncated rows are still counted exactly.
CHARS_PER_TOKEN_CUT = 6


def cut_at_word(text: str, limit: int) -> str:
    """``text`` up to the last whitespace before ``limit`` characters (whole if shorter).

    Tokenizers split words at whitespace first (WordPiece, byte-level BPE, Metaspace), so the tokens
    of the cut text are the first tokens of the whole text. Without whitespace in the last half of
    the window the cut falls at ``CHARS_PER_TOKEN_BOUND`` characters a token, as before.
    """
    if len(text) <= limit:
        return text
    end = max(text.rfind(" ", limit // 2, limit), text.rfind("\n", limit // 2, limit))
    return text[:end] if end > 0 else text[: limit * CHARS_PER_TOKEN_BOUND // CHARS_PER_TOKEN_CUT]


@dataclass
class Tokenized:
    """Token ids of a chunk's rows (``None`` when the collator tokenises per batch)."""

    lengths: np.ndarray  # int64 [n]: tokens per row as the model sees them (after truncation)
    truncated: int  # rows longer than max_seq_length
    ids: list[list[int]] | None = None
    type_ids: list[list[int]] | None = None
    texts: list[str] | None = None  # kept only by PreprocessCollator
    passages: Any = None  # PASSAGES=1 (embedder.passagefeed): the rows are windows; the documents' passages


@dataclass
class Batch:
    rows: np.ndarray  # indices into the chunk
    features: dict  # what the SentenceTransformer's forward takes, on the host
    tokens: int  # tokens computed, padding included


def token_lengths(tokenizer, texts: list[str], prompt: str, max_seq_length: int) -> np.ndarray:
    """Tokens per text with special tokens (prompt included), untruncated up to ``max_seq_length + 1``.

    Only a prefix of each text is tokenised: enough characters for ``max_seq_length`` tokens
    and one more, so a 100 kB article costs no more than a paragraph.
    """
    limit = (max_seq_length + 1) * CHARS_PER_TOKEN_BOUND
    encoded = tokenizer(
        [prompt + t[:limit] for t in texts],
        add_special_tokens=True,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )
    return np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(texts))


def can_tokenize_once(model) -> bool:
    """True when ``FastCollator`` reproduces the model's own preprocessing exactly."""
    from sentence_transformers.base.modules.transformer import Transformer

    first = model[0]
    if not isinstance(first, Transformer) or first.transformer_task != "feature-extraction":
        return False
    tokenizer = first.tokenizer
    overrides = first._merge_processing_kwargs(None)
    return (
        tokenizer is not None
        and tokenizer.is_fast
        and "text" in first.modality_config
        and "message" not in first.modality_config
        and not overrides.get("text")
        and not overrides.get("common")
    )


class FastCollator:
    """Tokenise each text once; pad or pack batches from the ids (no tokenizer after that)."""

    def __init__(self, model, prompt: str):
        first = model[0]
        self.tokenizer = copy.deepcopy(first.tokenizer)  # the feeder thread's own: not re-entrant
        self.max_len = int(model.max_seq_length)
        self.prompt = prompt
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.left = self.tokenizer.padding_side == "left"
        self.with_types = "token_type_ids" in self.tokenizer.model_input_names
        self.prompt_length = first._get_prompt_length(prompt) if prompt else None
        self.packed = bool(first.can_flatten_inputs)
        backend = self.tokenizer.backend_tokenizer  # the deep copy's own
        backend.no_padding()
        backend.enable_truncation(
            self.max_len, stride=0, strategy="longest_first", direction=self.tokenizer.truncation_side
        )
        self._encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)  # fast: no offsets
        self.position_offset = getattr(first, "_flatten_position_offset", 0) if self.packed else 0

    def tokenize(self, texts: list[str]) -> Tokenized:
        """One tokenizer call over the cut texts; rows whose cut gave too few tokens are redone whole."""
        limit = self.max_len * CHARS_PER_TOKEN_CUT
        heads = [cut_at_word(t, limit) for t in texts]
        ids, types, cut = self._encode(heads)
        redo = [i for i, t in enumerate(texts) if len(heads[i]) < len(t) and not cut[i]]
        if redo:
            r_ids, r_types, r_cut = self._encode([texts[i] for i in redo])
            for j, i in enumerate(redo):
                ids[i], cut[i] = r_ids[j], r_cut[j]
                if types is not None and r_types is not None:
                    types[i] = r_types[j]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        return Tokenized(lengths, int(sum(cut)), ids, types)

    def _encode(self, texts: list[str]) -> tuple[list, list | None, list[bool]]:
        """Ids truncated like ``Transformer.preprocess`` does (``truncation=True, max_length``), and which
        rows lost a tail; straight from the Rust tokenizer, without offsets or Python dicts per row."""
        encodings = self._encode_batch([self.prompt + t for t in texts])
        ids = [e.ids for e in encodings]
        types = [e.type_ids for e in encodings] if self.with_types else None
        return ids, types, [bool(e.overflowing) for e in encodings]

    def batches(self, tok: Tokenized, max_tokens: int) -> list[np.ndarray]:
        group = packed_batches if self.packed else token_budget_batches
        return group(tok.lengths, max_tokens)

    def collate(self, tok: Tokenized, rows: np.ndarray) -> Batch:
        """The batch of ``rows`` from texts tokenized once, packed or padded to the longest."""
        features = self._packed(tok, rows) if self.packed else self._padded(tok, rows)
        features["modality"] = "text"
        if self.prompt_length is not None:
            features["prompt_length"] = self.prompt_length
        return Batch(rows, features, computed_tokens(tok.lengths[rows], self.packed))

    def _padded(self, tok: Tokenized, rows: np.ndarray) -> dict:
        """Rows x longest row, filled with numpy from the flat ids (no loop over rows)."""
        assert tok.ids is not None  # this collator's tokenize keeps the ids
        lengths = tok.lengths[rows]
        width = max(int(lengths.max()), 1)
        cols = np.arange(width)
        mask = cols >= width - lengths[:, None] if self.left else cols < lengths[:, None]
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        ids[mask] = _flat(tok.ids, rows, int(lengths.sum()))
        out = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask.astype(np.int64))}
        if tok.type_ids is not None:
            types = np.zeros((len(rows), width), dtype=np.int64)
            types[mask] = _flat(tok.type_ids, rows, int(lengths.sum()))
            out["token_type_ids"] = torch.from_numpy(types)
        elif self.with_types:  # windows of a template whose type ids are all 0 (embedder.passagefeed)
            out["token_type_ids"] = torch.zeros((len(rows), width), dtype=torch.int64)
        return out

    def _packed(self, tok: Tokenized, rows: np.ndarray) -> dict:
        """What ``Transformer.preprocess`` builds when it flattens a batch for flash attention
        (``DataCollatorWithFlattening``), with numpy. A zero-token row gets one padding token, so
        every row stays one sequence and the pooled rows stay aligned with ``rows``."""
        assert tok.ids is not None  # this collator's tokenize keeps the ids
        lengths = np.maximum(tok.lengths[rows], 1)
        if hasattr(tok.ids, "concat"):  # windows (embedder.passagefeed): never empty
            flat = tok.ids.concat(rows)
        else:
            ids = [tok.ids[r] or [self.pad_id] for r in rows]
            flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        ends = np.cumsum(lengths)
        starts = np.repeat(ends - lengths, lengths)
        cu = torch.from_numpy(np.r_[0, ends].astype(np.int32))
        longest = int(lengths.max())
        return {
            "input_ids": torch.from_numpy(flat)[None],
            "position_ids": torch.from_numpy(np.arange(len(flat)) - starts + self.position_offset)[None],
            "seq_idx": torch.from_numpy(np.repeat(np.arange(len(rows), dtype=np.int32), lengths))[None],
            "cu_seq_lens_q": cu,
            "cu_seq_lens_k": cu.clone(),
            "max_length_q": longest,
            "max_length_k": longest,
        }


def _flat(values: list[list[int]], rows: np.ndarray, total: int) -> np.ndarray:
    """The lists ``values[r]`` for ``r`` in ``rows``, concatenated, as int64."""
    if hasattr(values, "concat"):  # windows (embedder.passagefeed.WindowIds): arrays, joined by numpy
        return values.concat(rows)
    return np.fromiter(itertools.chain.from_iterable(values[r] for r in rows), dtype=np.int64, count=total)


class PreprocessCollator:
    """Any other model: count tokens first, then ``model.preprocess`` per batch (tokenises twice)."""

    packed = False

    def __init__(self, model, prompt: str):
        self.model, self.prompt = model, prompt
        self.max_len = int(model.max_seq_length)

    def tokenize(self, texts: list[str]) -> Tokenized:
        """Token lengths of ``texts`` capped at ``max_len``, how many were cut, and the texts themselves."""
        lengths = token_lengths(self.model.tokenizer, texts, self.prompt, self.max_len)
        return Tokenized(np.minimum(lengths, self.max_len), int((lengths > self.max_len).sum()), texts=texts)

    def batches(self, tok: Tokenized, max_tokens: int) -> list[np.ndarray]:
        return token_budget_batches(tok.lengths, max_tokens)

    def collate(self, tok: Tokenized, rows: np.ndarray) -> Batch:
        """The batch of ``rows``, tokenized now by the model's own ``preprocess``."""
        assert tok.texts is not None  # this collator's tokenize keeps the texts
        features = self.model.preprocess([tok.texts[i] for i in rows], prompt=self.prompt or None)
        return Batch(rows, features, computed_tokens(tok.lengths[rows], False))


def make_collator(model, prompt: str) -> FastCollator | PreprocessCollator:
    """The fast collator when the model's texts can be tokenized once, else the model's own preprocessing."""
    return FastCollator(model, prompt) if can_tokenize_once(model) else PreprocessCollator(model, prompt)
