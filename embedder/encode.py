"""Encode texts by token budget, in input order, with a float32 rescue for non-finite rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from embedder.batching import token_budget_batches
from kit.errors import EncodeError

CHARS_PER_TOKEN_BOUND = 12  # tokenise at most this many characters per allowed token


@dataclass
class EncodeCounters:
    truncated_rows: int = 0  # rows longer than max_seq_length (their tail is not embedded)
    recomputed_rows: int = 0  # rows whose low-precision output was non-finite, redone in float32
    batches: int = 0


def token_lengths(tokenizer, texts: list[str], prompt: str, max_seq_length: int) -> np.ndarray:
    """Tokens per text with special tokens, as the model will see them (prompt included).

    Only a prefix of each text is tokenised: enough characters for ``max_seq_length`` tokens
    and one more, so a 100 kB article costs no more than a paragraph.
    """
    limit = (max_seq_length + 1) * CHARS_PER_TOKEN_BOUND
    encoded = tokenizer([prompt + t[:limit] for t in texts], add_special_tokens=True,
                        return_attention_mask=False, return_token_type_ids=False, verbose=False)
    return np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(texts))


class TextEncoder:
    """Turns a list of texts into a float32 array [n, dim] in the same order."""

    def __init__(self, model, *, prompt: str, normalize: bool, max_tokens: int,
                 fallback: Callable[[], object] | None = None):
        """``fallback`` loads a float32 model on first need (only given for bf16/fp16)."""
        self.model = model
        self.prompt = prompt
        self.normalize = normalize
        self.max_tokens = max_tokens
        self._fallback_loader = fallback
        self._fallback = None
        self.counters = EncodeCounters()

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str], on_batch: Callable[[int], None] = lambda n: None) -> np.ndarray:
        """Float32 array of shape [len(texts), dim]; row i embeds texts[i]."""
        max_len = int(self.model.max_seq_length)
        lengths = token_lengths(self.model.tokenizer, texts, self.prompt, max_len)
        self.counters.truncated_rows += int((lengths > max_len).sum())
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for batch in token_budget_batches(np.minimum(lengths, max_len), self.max_tokens):
            out[batch] = self._encode_batch([texts[i] for i in batch])
            self.counters.batches += 1
            on_batch(len(batch))
        return out

    def _run(self, model, texts: list[str]) -> np.ndarray:
        emb = model.encode(texts, prompt=self.prompt or None, batch_size=len(texts),
                           normalize_embeddings=self.normalize, convert_to_numpy=True,
                           show_progress_bar=False)
        return np.asarray(emb, dtype=np.float32)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        emb = self._run(self.model, texts)
        bad = ~np.isfinite(emb).all(axis=1)
        if bad.any():
            emb[bad] = self._rescue([t for t, b in zip(texts, bad, strict=True) if b])
            self.counters.recomputed_rows += int(bad.sum())
        return emb

    def _rescue(self, texts: list[str]) -> np.ndarray:
        if self._fallback_loader is None:
            raise EncodeError(f"{len(texts)} rows gave non-finite embeddings in float32; "
                              f"first text starts: {texts[0][:80]!r}")
        if self._fallback is None:
            self._fallback = self._fallback_loader()
        emb = self._run(self._fallback, texts)
        if not np.isfinite(emb).all():
            raise EncodeError(f"Rows stay non-finite in float32; first text starts: {texts[0][:80]!r}")
        return emb
