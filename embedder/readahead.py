"""Read the next batch of a source while the current one is checked.

Decoding a parquet row group or parsing a JSON block runs in Arrow's C++ code without the GIL,
so on a login node with a second core prepare's wall time becomes about the larger of reading
and checking instead of their sum. One batch ahead: memory grows by one batch (≤ 4 MiB of text).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
_END = object()


def read_ahead(items: Iterable[T]) -> Generator[T, None, None]:
    """Yield ``items`` in order, fetching each next item on a background thread.

    The iterator is only ever advanced by one thread at a time, and an error it raises reaches the
    consumer when it asks for that item, not earlier. Closing this generator never waits: a fetch
    in flight finishes on its own and is dropped. (A generator abandoned by an error is closed by
    the garbage collector, at any point of any thread: waiting there for a thread can deadlock.)
    Callers close it when they stop early (``contextlib.closing``).
    """
    source = iter(items)
    pool = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")
    try:
        pending = pool.submit(next, source, _END)
        while True:
            item = pending.result()
            if item is _END:
                return
            pending = pool.submit(next, source, _END)
            yield item  # type: ignore[misc]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
