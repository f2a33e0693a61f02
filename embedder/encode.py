"""Encode texts by token budget, in input order, with the model's own modules.

Each chunk of texts is tokenised once (``embedder.feeder``) in a background thread
(``embedder.prefetch``); batches run through the SentenceTransformer's forward (its Transformer,
Pooling, Dense, Normalize modules), and their outputs stay on the device until the chunk is
done: one copy to the host and one finiteness check per chunk. Rows that come out non-finite in
low precision are redone in float32. A CUDA out-of-memory error halves the batch's token budget
and retries, down to a single row (retried once more after freeing memory); the budget grows back,
doubling after each chunk that ran without one, so a transient error does not slow the whole task.
Every row of a chunk is checked on the host to have been computed before the chunk is returned.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from embedder.feeder import Batch, FastCollator, Tokenized, make_collator, token_lengths  # noqa: F401
from embedder.passagefeed import PassageCollator
from embedder.passages import ChunkPassages, document_vectors
from embedder.prefetch import PinnedStager, Prefetcher, PreparedChunk
from kit.errors import EncodeError

log = logging.getLogger(__name__)
_ROWS = "_embedkit_rows"  # the batch's row indices, staged to the device with its inputs


@dataclass
class EncodeCounters:
    truncated_rows: int = 0  # rows longer than max_seq_length (their tail is not embedded)
    recomputed_rows: int = 0  # rows whose low-precision output was non-finite, redone in float32
    batches: int = 0
    oom_splits: int = 0  # batches split after a CUDA out-of-memory error
    computed_tokens: int = 0  # tokens computed, padding included
    text_tokens: int = 0  # tokens of the texts (after truncation)

    def added_to(self, prior, before: EncodeCounters) -> dict[str, int]:
        """Counts since ``before`` added to ``prior`` (a resumed shard's attrs from earlier attempts)."""
        return {
            f.name: int(prior.get(f.name, 0)) + getattr(self, f.name) - getattr(before, f.name)
            for f in fields(self)
            if f.name != "batches"
        }


class TextEncoder:
    """Turns texts into float32 arrays [n, dim] in the same order."""

    def __init__(
        self,
        model,
        *,
        prompt: str,
        normalize: bool,
        max_tokens: int,
        fallback: Callable[[], object] | None = None,
        pin_memory: bool = False,
        threaded: bool = True,
        overlap: int | None = None,
    ):
        """``fallback`` loads a float32 model on first need (only given for bf16/fp16). ``overlap``: PASSAGES=1,
        documents cut into windows sharing that many tokens (``encode_documents``)."""
        self.model = model.eval()
        self.prompt = prompt
        self.normalize = normalize
        self.max_tokens = max_tokens  # lowered after an out-of-memory error, grows back after clean chunks
        self.start_tokens = max_tokens
        self.lowest_tokens = max_tokens  # the smallest budget used (recorded as max_tokens_per_batch_settled)
        self.device = model.device
        self.collator = (
            make_collator(model, prompt) if overlap is None else PassageCollator(model, prompt, overlap)
        )
        self.passages = overlap is not None
        self.overlap = overlap  # PASSAGES=1: tokens shared by consecutive windows; None: plain mode
        # A document vector (the mean of its passages') is normalised where the model's own vectors are.
        self.normalizes = normalize or any(type(m).__name__ == "Normalize" for m in model)
        # Only FastCollator may run in a thread: it owns its tokenizer and collates without one.
        self.threaded = threaded and isinstance(self.collator, FastCollator)
        self.stager = PinnedStager(str(self.device)) if pin_memory and self.device.type == "cuda" else None
        self._fallback_loader = fallback
        self._fallback: Any = None  # a float32 SentenceTransformer, loaded on the first rescue
        self.counters = EncodeCounters()

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def packed(self) -> bool:
        return bool(self.collator.packed)

    def encode(self, texts: list[str], on_batch: Callable[[int], None] = lambda n: None) -> np.ndarray:
        """Float32 array of shape [len(texts), dim]; row i embeds texts[i] (its document vector with PASSAGES=1)."""
        return next(iter(self.encode_chunks([(0, texts, None)], on_batch)))[2]

    def encode_chunks(
        self, chunks: Iterable[tuple[int, list[str], Any]], on_batch: Callable[[int], None] = lambda n: None
    ) -> Iterator[tuple[int, Any, np.ndarray]]:
        """For each ``(first_row, texts, extra)`` in order: ``(first_row, extra, float32 [len(texts), dim])``.

        The next chunk is read and tokenised while this one runs; ``first_row`` (the corpus row
        of ``texts[0]``) names the row in errors. ``chunks`` may be a lazy iterator.
        """
        for first_row, extra, emb, _ in self.encode_documents(chunks, on_batch):
            yield first_row, extra, emb

    def encode_documents(
        self, chunks: Iterable[tuple[int, list[str], Any]], on_batch: Callable[[int], None] = lambda n: None
    ) -> Iterator[tuple[int, Any, np.ndarray, ChunkPassages | None]]:
        """``encode_chunks`` with each chunk's passages: ``(first_row, extra, float32 [len(texts), dim], passages)``.

        Plain mode: ``passages`` is None. PASSAGES=1: the batches are the documents' windows; the vectors
        are the document vectors (``embedder.passages.document_vectors``) and ``passages`` holds each
        passage's vector, span and tokens. ``on_batch`` then counts documents, once a chunk is done.
        """
        for chunk in Prefetcher(self.collator, chunks, lambda: self.max_tokens, self.threaded):
            passages = chunk.tok.passages
            if passages is None:
                yield chunk.first_row, chunk.extra, self._encode_chunk(chunk, on_batch), None
                continue
            passages.embeddings = self._encode_chunk(chunk, lambda n: None)
            on_batch(len(chunk.texts))
            yield chunk.first_row, chunk.extra, document_vectors(passages, self.normalizes), passages

    def _encode_chunk(self, chunk: PreparedChunk, on_batch: Callable[[int], None]) -> np.ndarray:
        self.counters.truncated_rows += chunk.tok.truncated
        self.counters.text_tokens += int(chunk.tok.lengths.sum())
        out = torch.empty((chunk.rows, self.dim), dtype=torch.float32, device=self.device)
        finite = torch.ones(chunk.rows, dtype=torch.bool, device=self.device)
        computed = np.zeros(chunk.rows, dtype=bool)  # on the host: which rows a forward pass filled
        splits = self.counters.oom_splits
        for batch in chunk.batches:
            for piece in self._fitting(chunk, batch):
                self._forward(piece, chunk, out, finite, computed)
                on_batch(len(piece.rows))
        _check_computed(computed, chunk)
        emb, finite_rows = out.cpu().numpy(), finite.cpu().numpy()
        if not finite_rows.all():
            bad = np.flatnonzero(~finite_rows)
            emb[bad] = self._rescue(chunk.row_texts(bad), chunk, bad)
            self.counters.recomputed_rows += len(bad)
        if self.counters.oom_splits == splits and self.max_tokens < self.start_tokens:
            self.max_tokens = min(self.max_tokens * 2, self.start_tokens)  # a clean chunk: grow back
        return emb

    def _fitting(self, chunk: PreparedChunk, batch: Batch) -> Iterator[Batch]:
        """``batch`` itself, or its pieces under a budget lowered since it was prepared."""
        if batch.tokens <= self.max_tokens or len(batch.rows) == 1:
            yield batch
            return
        for rows in self.collator.batches(_subset(chunk.tok, batch.rows), self.max_tokens):
            yield self.collator.collate(chunk.tok, batch.rows[rows])

    def _forward(
        self,
        batch: Batch,
        chunk: PreparedChunk,
        out: torch.Tensor,
        finite: torch.Tensor,
        computed: np.ndarray,
    ) -> None:
        """Embed ``batch`` into its rows of ``out``; on out-of-memory, split it and retry the pieces."""
        result = self._try_run(batch)
        if result is None and len(batch.rows) == 1:
            release_memory(self.device)  # one more try for a single row: the error may have been transient
            result = self._try_run(batch)
        if result is None:
            for piece in self._split_after_oom(batch, chunk):
                self._forward(piece, chunk, out, finite, computed)
            return
        emb, index = result
        out[index] = emb
        finite[index] = torch.isfinite(emb).all(dim=1)  # checked once per chunk: no sync per batch
        computed[batch.rows] = True
        self.counters.batches += 1
        self.counters.computed_tokens += batch.tokens

    def _try_run(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor] | None:
        try:
            return self._run(batch)
        except torch.OutOfMemoryError:
            return None  # handled outside the except block, so the failed pass's tensors are freed first

    def _split_after_oom(self, batch: Batch, chunk: PreparedChunk) -> list[Batch]:
        release_memory(self.device)
        if len(batch.rows) == 1:
            row = chunk.corpus_row(int(batch.rows[0]))
            raise EncodeError(
                f"Corpus row {row} ({batch.tokens} tokens) does not fit in {self.device} memory even alone. "
                f"Set MAX_SEQ_LENGTH= below {int(self.model.max_seq_length)}, use a smaller model, or a GPU "
                "with more memory."
            )
        self.max_tokens = max(min(self.max_tokens, batch.tokens) // 2, 1)
        self.lowest_tokens = min(self.lowest_tokens, self.max_tokens)
        self.counters.oom_splits += 1
        log.warning(
            "out of memory on a batch of %d rows (%d tokens): token budget now %d, retrying in pieces",
            len(batch.rows),
            batch.tokens,
            self.max_tokens,
        )
        groups = self.collator.batches(_subset(chunk.tok, batch.rows), self.max_tokens)
        return [self.collator.collate(chunk.tok, batch.rows[g]) for g in groups]

    @torch.inference_mode()
    def _run(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 [rows, dim] on the device, and the batch's row indices there (copied with its inputs)."""
        features = {**batch.features, _ROWS: torch.from_numpy(batch.rows)}
        if self.stager is not None:
            features = self.stager.to_device(features)
        else:
            features = {
                k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in features.items()
            }
        index = features.pop(_ROWS)
        emb = self.model(features)["sentence_embedding"]
        truncate_dim = getattr(self.model, "truncate_dim", None)
        emb = (emb[:, :truncate_dim] if truncate_dim else emb).float()
        return (torch.nn.functional.normalize(emb, p=2, dim=1) if self.normalize else emb), index

    def _rescue(self, texts: list[str], chunk: PreparedChunk, bad: np.ndarray) -> np.ndarray:
        """Rows that were non-finite, in float32 with a model loaded for them and freed after."""
        first = chunk.corpus_row(int(bad[0]))
        if self._fallback_loader is None:
            raise EncodeError(
                f"{len(bad)} rows gave non-finite embeddings in float32; first is corpus row {first}."
            )
        try:
            emb = self._rescue_with_fallback(texts)
        finally:
            self._fallback = None  # freed: the float32 copy must not sit beside the model for the whole task
            release_memory(self.device)
        if emb is None:
            raise EncodeError(
                f"{len(bad)} rows were non-finite in {self.model.dtype} and their float32 rerun ran "
                f"out of {self.device} memory; first is corpus row {first}. Pass COMPUTE_DTYPE=float32."
            )
        if not np.isfinite(emb).all():
            raise EncodeError(f"Rows stay non-finite in float32; first is corpus row {first}.")
        return emb

    def _rescue_with_fallback(self, texts: list[str]) -> np.ndarray | None:
        """Float32 rows, retried one row at a time after an out-of-memory error; None if even that fails."""
        loader = self._fallback_loader
        assert loader is not None  # _rescue answers without one before calling this
        for batch_size in (8, 1):
            try:
                if self._fallback is None:
                    self._fallback = loader()
                return np.asarray(
                    self._fallback.encode(
                        texts,
                        prompt=self.prompt or None,
                        batch_size=batch_size,
                        normalize_embeddings=self.normalize,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    ),
                    dtype=np.float32,
                )
            except torch.OutOfMemoryError:
                log.warning(
                    "out of memory in the float32 rerun of %d rows (batch %d)", len(texts), batch_size
                )
            release_memory(self.device)
        return None


def release_memory(device: torch.device) -> None:
    """Free what an out-of-memory pass left: Python garbage first (it holds tensors), then CUDA's cache."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _check_computed(computed: np.ndarray, chunk: PreparedChunk) -> None:
    """Refuse a chunk with rows no forward pass filled (they hold whatever the buffer held)."""
    missing = np.flatnonzero(~computed)
    if len(missing):
        raise EncodeError(
            f"{len(missing)} rows of the chunk at corpus row {chunk.first_row} were never computed (first: "
            f"corpus row {chunk.corpus_row(int(missing[0]))}); nothing of this chunk was written. "
            "Run the same command again to resume."
        )


def _subset(tok: Tokenized, rows: np.ndarray) -> Tokenized:
    """The lengths of ``rows`` only (to group them again under a new budget)."""
    return Tokenized(tok.lengths[rows], 0)
