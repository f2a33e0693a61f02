"""Keep the device busy: prepare the next chunk's batches while the current one runs.

``Prefetcher`` reads, tokenises and collates chunks in a background thread (the tokenizer and
h5py release the GIL while they work), at most one chunk ahead of the consumer, so the forward
passes never wait on the host. ``PinnedStager`` copies batches to a CUDA device through reused
page-locked buffers with ``non_blocking=True`` (an option, off by default: not measured yet).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from embedder.feeder import Batch, Tokenized

_END = object()
log = logging.getLogger(__name__)


@dataclass
class PreparedChunk:
    first_row: int  # corpus row of texts[0] (names rows in errors)
    texts: list[str]
    extra: Any  # what the caller passed along (the rows' ids)
    tok: Tokenized
    batches: Iterable[Batch]  # in the order the budget grouped them (longest rows first)

    @property
    def rows(self) -> int:
        """Rows of the batches: the texts, or with PASSAGES=1 their windows."""
        return len(self.tok.lengths)

    def corpus_row(self, row: int) -> int:
        """The corpus row of batch row ``row`` (with PASSAGES=1: of its document)."""
        passages = self.tok.passages
        if passages is None:
            return self.first_row + row
        return self.first_row + int(np.searchsorted(passages.ptr, row, side="right")) - 1

    def row_texts(self, rows) -> list[str]:
        """The text of each batch row in ``rows`` (with PASSAGES=1: each window's span of its document)."""
        if self.tok.passages is None:
            return [self.texts[i] for i in rows]
        return self.tok.passages.texts(self.texts, rows)


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class Prefetcher:
    """Iterate ``PreparedChunk`` objects for ``chunks`` of ``(first_row, texts, extra)``, prepared ahead.

    ``budget()`` is read for each new chunk, so a budget lowered after an out-of-memory error
    applies from the next chunk on (the consumer splits batches already prepared).
    """

    def __init__(
        self,
        collator,
        chunks: Iterable[tuple[int, list[str], Any]],
        budget: Callable[[], int],
        threaded: bool = True,
    ):
        self.collator, self.chunks, self.budget, self.threaded = collator, chunks, budget, threaded
        self._ready: queue.Queue = queue.Queue()
        self._slots = threading.Semaphore(2)  # the chunk being consumed and the next one
        self._stop = threading.Event()

    def __iter__(self) -> Iterator[PreparedChunk]:
        if not self.threaded:
            yield from self._inline()
            return
        worker = threading.Thread(target=self._work, name="embed-feeder", daemon=True)
        worker.start()
        try:
            while (item := self._ready.get()) is not _END:
                if isinstance(item, _Failure):
                    raise item.error
                yield item
                self._slots.release()
        finally:
            self._stop.set()
            self._slots.release()  # wake a worker waiting for a slot, so it sees the stop flag

    def _inline(self) -> Iterator[PreparedChunk]:
        for first_row, texts, extra in self.chunks:
            tok = self.collator.tokenize(texts)
            rows = self.collator.batches(tok, self.budget())
            yield PreparedChunk(first_row, texts, extra, tok, (self.collator.collate(tok, r) for r in rows))

    def _work(self) -> None:
        try:
            for first_row, texts, extra in self.chunks:
                self._slots.acquire()
                if self._stop.is_set():
                    return
                tok = self.collator.tokenize(texts)
                batches: queue.Queue = queue.Queue()
                self._ready.put(PreparedChunk(first_row, texts, extra, tok, _drain(batches)))
                if not self._fill(batches, tok):
                    return
        except BaseException as err:  # noqa: BLE001 (handed to the consumer thread, which re-raises it)
            self._ready.put(_Failure(err))
        self._ready.put(_END)

    def _fill(self, batches: queue.Queue, tok: Tokenized) -> bool:
        """Collate one chunk's batches into ``batches``; a failure ends that chunk with the error itself
        (the consumer raises it inside the chunk, never commits a chunk cut short)."""
        try:
            for rows in self.collator.batches(tok, self.budget()):
                batches.put(self.collator.collate(tok, rows))
        except BaseException as err:  # noqa: BLE001 (raised by _drain in the consumer thread)
            batches.put(_Failure(err))
            return False
        batches.put(_END)
        return True


def _drain(batches: queue.Queue) -> Iterator[Batch]:
    while (batch := batches.get()) is not _END:
        if isinstance(batch, _Failure):
            raise batch.error
        yield batch


class BackgroundWriter:
    """Runs ``append(*args)`` for each ``put`` in a thread, in order, one chunk behind the compute.

    The device-to-host copy and HDF5 flushes of a chunk overlap the next chunk's forward passes,
    which run asynchronously on a GPU (and in the simulated device of bench/feed_rate.py). A failed append is raised by the next ``put`` or by ``close``; ``close`` waits for
    every chunk already handed over, so the rows counted in the shard are the rows written.
    """

    def __init__(self, append: Callable[..., None], depth: int = 1):
        self.append = append
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="embed-writer", daemon=True)
        self._thread.start()

    def put(self, *args) -> None:
        """Hand ``args`` to the writer thread (waits while it is behind); raises an earlier append's error."""
        self._raise()
        self._queue.put(args)

    def close(self) -> None:
        """Wait until every chunk handed over is written and stop the thread; raises an append's error."""
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        self._raise()

    def __enter__(self) -> BackgroundWriter:  # noqa: PYI034
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
            return
        try:
            self.close()  # the chunks handed over are whole: write them, then let the first error through
        except BaseException as err:
            if err is not value:  # the writer's own error, already on its way up, is not logged twice
                log.warning("a chunk write failed while handling another error", exc_info=True)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while (item := self._queue.get()) is not _END:
            if self._error is None:
                try:
                    self.append(*item)
                except BaseException as err:  # noqa: BLE001 (raised in the caller's thread)
                    self._error = err


class PinnedStager:
    """Host-to-GPU copies through a few reused page-locked buffers, ``non_blocking`` (CUDA only).

    A buffer is refilled only after the copy that last read it has finished (a CUDA event).
    """

    def __init__(self, device: str, slots: int = 3):
        self.device = torch.device(device)
        self.buffers: list[torch.Tensor | None] = [None] * slots
        self.events: list[torch.cuda.Event | None] = [None] * slots
        self.turn = 0

    def to_device(self, features: dict) -> dict:
        """``features`` with its tensors copied to the device asynchronously, via pinned buffers in turn."""
        slot, self.turn = self.turn, (self.turn + 1) % len(self.buffers)
        event = self.events[slot]
        if event is not None:
            event.synchronize()
        tensors = {k: v for k, v in features.items() if isinstance(v, torch.Tensor)}
        need = sum(_aligned(v.numel() * v.element_size()) for v in tensors.values())
        buffer = self.buffers[slot]
        if buffer is None or buffer.numel() < need:
            buffer = self.buffers[slot] = torch.empty(max(need, 1 << 20), dtype=torch.uint8, pin_memory=True)
        out, offset = dict(features), 0
        for name, value in tensors.items():
            size = value.numel() * value.element_size()
            staged = buffer[offset : offset + size].view(value.dtype).view(value.shape)
            staged.copy_(value)
            out[name] = staged.to(self.device, non_blocking=True)
            offset += _aligned(size)
        event = self.events[slot] = torch.cuda.Event()
        event.record()
        return out


def _aligned(nbytes: int) -> int:
    return (nbytes + 63) // 64 * 64
