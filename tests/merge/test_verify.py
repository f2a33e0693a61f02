from dataclasses import replace
from pathlib import Path

from tests.fixtures.synthetic import identity
from kit.shardfile import ShardHeader, ShardIdentity, ShardSpec
from merge.verify import verify

IDENT = identity(8, "c" * 64)
PLAN = [ShardSpec(0, 0, 10), ShardSpec(1, 10, 20), ShardSpec(2, 20, 30)]


def header(index, start, stop, rows=None, rows_done=None, suffix="", **ident):
    rows = stop - start if rows is None else rows
    return ShardHeader(
        Path(f"shard-{index:05d}.h5{suffix}"),
        start,
        stop,
        rows,
        rows if rows_done is None else rows_done,
        not suffix,
        replace(IDENT, **ident),
        {},
    )


def run(complete, partial=None):
    return verify(
        complete, partial or {}, PLAN, 30, ShardIdentity(model=IDENT.model, corpus_fingerprint="c" * 64)
    )


def test_clean_tiling_passes():
    assert run([header(2, 20, 30), header(0, 0, 10), header(1, 10, 20)]).ok


def test_gap_names_rows_and_the_unfinished_shard():
    v = run([header(0, 0, 10), header(2, 20, 30)], {1: header(1, 10, 20, rows=4, suffix=".tmp")})
    assert v.problems == ["Rows [10, 20) are missing (shard-00001.h5: unfinished, 4 of 10 rows flushed)."]
    assert v.missing == {1} and not v.redo


def test_tail_gap_and_never_written():
    v = run([header(0, 0, 10), header(1, 10, 20)])
    assert v.problems == ["Rows [20, 30) are missing (shard-00002.h5: not written)."]


def test_overlap_names_both_files_and_redoes_the_off_plan_one():
    v = run([header(0, 0, 10), header(1, 10, 20), header(2, 20, 30), header(7, 5, 15)])
    assert any(
        "Rows [5, 10) are in two shards: shard-00000.h5 [0, 10) and shard-00007.h5 [5, 15)" in p
        for p in v.problems
    )
    assert v.redo == {7}


def test_truncated_and_mismatched_shards_are_named():
    v = run(
        [
            header(0, 0, 10, rows=7, rows_done=7),
            header(1, 10, 20, model="other/model"),
            header(2, 20, 30, dim=16),
        ]
    )
    text = "\n".join(v.problems)
    assert "shard-00000.h5 rows [0, 10) is truncated: it holds 7 rows (rows_done 7) of 10." in text
    assert "shard-00001.h5 has model 'other/model'; run.json pins 'synthetic/unit-vectors'." in text
    assert "Shards disagree on dim: shard-00002.h5 has 16" in text
    assert v.redo == {0, 1, 2}


def test_a_pinned_value_decides_even_against_the_majority():
    pinned = ShardIdentity(
        model=IDENT.model, model_fingerprint=IDENT.model_fingerprint, prompt="", corpus_fingerprint="c" * 64
    )
    v = verify(
        [header(0, 0, 10), header(1, 10, 20, prompt="query: "), header(2, 20, 30, prompt="query: ")],
        {},
        PLAN,
        30,
        pinned,
    )
    assert v.problems == [
        "shard-00001.h5 has prompt 'query: '; run.json pins ''.",
        "shard-00002.h5 has prompt 'query: '; run.json pins ''.",
    ]
    assert v.redo == {1, 2}
    moved = verify(
        [header(0, 0, 10, model="/elsewhere/same-weights"), header(1, 10, 20), header(2, 20, 30)],
        {},
        PLAN,
        30,
        pinned,
    )
    assert moved.ok  # the weights' fingerprint decides; the path is only where they were found
