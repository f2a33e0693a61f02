"""Prepare's threads: the next batch is read, and the converted parquet written, beside the checks;
order, errors and closing stay exact."""

import gc
import threading

import pytest

from embedder.readahead import read_ahead
from tests.conftest import write_jsonl


def test_items_come_in_order_and_are_fetched_off_the_consumers_thread():
    fetched_on: list[str] = []

    def items():
        for i in range(50):
            fetched_on.append(threading.current_thread().name)
            yield i

    assert list(read_ahead(items())) == list(range(50))
    assert fetched_on and all(name.startswith("read-ahead") for name in fetched_on)


def test_an_error_reaches_the_consumer_at_its_item_after_every_earlier_item():
    def items():
        yield from range(3)
        raise ValueError("row group 3 cannot be read")

    got = []
    with pytest.raises(ValueError, match="row group 3"):
        for item in read_ahead(items()):
            got.append(item)
    assert got == [0, 1, 2]


def test_closing_early_stops_fetching_after_at_most_one_more_item():
    fetched = []

    def items():
        for i in range(1000):
            fetched.append(i)
            yield i

    reader = read_ahead(items())
    assert [next(reader) for _ in range(5)] == list(range(5))
    reader.close()
    assert len(fetched) <= 6


def _blocked_source(release: threading.Event):
    yield 0
    release.wait(30)  # the fetch of the second item hangs until released (a slow disk, a network mount)
    yield 1


def _finishes_within(seconds: float, fn) -> bool:
    worker = threading.Thread(target=fn, daemon=True)
    worker.start()
    worker.join(seconds)
    return not worker.is_alive()


def test_closing_never_waits_for_the_fetch_in_flight():
    release = threading.Event()
    reader = read_ahead(_blocked_source(release))
    assert next(reader) == 0  # the second item is being fetched, and hangs
    closed = _finishes_within(5, reader.close)
    release.set()
    assert closed


def test_a_reader_abandoned_by_an_error_is_collected_anywhere_without_blocking():
    """An error leaves the generator in a reference cycle (its traceback); the cyclic garbage collector
    then closes it at any point of any thread. There, waiting for the reading thread deadlocked
    `make test` (the collector ran inside another thread's start)."""
    release = threading.Event()

    def consume():
        reader = read_ahead(_blocked_source(release))
        for _ in reader:
            raise ValueError("a bad batch")

    try:
        consume()
    except ValueError as err:
        cycle = [err]
        cycle.append(cycle)  # keeps the traceback, and the suspended reader, for the collector only
    del cycle
    collected = _finishes_within(5, gc.collect)
    release.set()
    assert collected


def test_the_converted_parquet_is_written_on_a_thread_and_its_failure_stops_prepare(tmp_path, monkeypatch):
    """A JSONL source becomes the run's own parquet, one row group written while the next is checked;
    a failed write (a full disk) fails prepare with that error and leaves no file behind."""
    import pyarrow.parquet as pq

    from embedder import placement
    from embedder.corpus import CorpusOptions, prepare_source
    from embedder.readers import jsonl
    from kit.corpusfile import read_slice

    source = write_jsonl(
        tmp_path / "c.jsonl", [{"id": f"r{i}", "text": f"row {i} text"} for i in range(1000)]
    )
    monkeypatch.setattr(placement, "ROW_GROUP_ROWS", 100)
    monkeypatch.setattr(jsonl, "ARROW_BLOCK_BYTES", 1000)  # batches of ~50 rows: a row group every 2
    threads: list[str] = []
    write_table = pq.ParquetWriter.write_table

    def spy(self, table, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return write_table(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", spy)
    good = tmp_path / "good" / "corpus.h5"
    prepare_source(source, good, CorpusOptions())
    assert read_slice(good, 0, 1000)["texts"] == [f"row {i} text" for i in range(1000)]
    assert len(threads) >= 5 and all(name.startswith("parquet-write") for name in threads)

    calls = []

    def full_disk(self, table, *args, **kwargs):
        calls.append(len(table))
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return write_table(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_disk)
    bad = tmp_path / "bad" / "corpus.h5"
    with pytest.raises(OSError, match="No space left"):
        prepare_source(source, bad, CorpusOptions())
    assert sorted(p.name for p in bad.parent.iterdir()) == []
