"""Pure checks over shard headers: tiling of [0, N), completeness, one identity for all."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from kit.format import shard_index, shard_name
from kit.shardfile import IDENTITY_KEYS, ShardHeader, ShardIdentity, ShardSpec


SHOWN_SHARDS = 6  # a message names at most this many shards of one gap


@dataclass
class Verdict:
    """Problems found, and which planned shards to recompute (by index)."""

    problems: list[str] = field(default_factory=list)
    redo: set[int] = field(default_factory=set)  # complete shard files that must be recomputed
    missing: set[int] = field(default_factory=set)  # planned shards with no complete file

    @property
    def ok(self) -> bool:
        return not self.problems


def _planned_over(plan: list[ShardSpec], start: int, stop: int) -> list[ShardSpec]:
    return [s for s in plan if s.start < stop and start < s.stop]


def tiling(
    complete: list[ShardHeader],
    partial: dict[int, ShardHeader],
    plan: list[ShardSpec],
    n_rows: int,
    verdict: Verdict,
) -> None:
    """Every row of [0, n_rows) in exactly one complete shard; name gaps, overlaps and files."""
    cursor, previous = 0, None
    for h in sorted(complete, key=lambda h: (h.start, h.stop)):
        if h.start > cursor:
            _gap(cursor, h.start, partial, plan, verdict)
        elif h.start < cursor and previous is not None:
            verdict.problems.append(
                f"Rows [{h.start}, {min(cursor, h.stop)}) are in two shards: {previous.path.name} "
                f"[{previous.start}, {previous.stop}) and {h.path.name} [{h.start}, {h.stop})."
            )
            verdict.redo.update(_off_plan(plan, (previous, h)))
        if h.stop > n_rows:
            verdict.problems.append(
                f"{h.path.name} covers rows [{h.start}, {h.stop}) beyond the corpus's {n_rows} rows."
            )
        if h.stop > cursor:
            cursor, previous = h.stop, h
    if cursor < n_rows:
        _gap(cursor, n_rows, partial, plan, verdict)


def _off_plan(plan: list[ShardSpec], headers: tuple[ShardHeader, ...]) -> list[int]:
    planned = {(s.start, s.stop): s.index for s in plan}
    return [i for h in headers if (h.start, h.stop) not in planned if (i := shard_index(h.path)) is not None]


def _gap(
    start: int, stop: int, partial: dict[int, ShardHeader], plan: list[ShardSpec], verdict: Verdict
) -> None:
    owners = _planned_over(plan, start, stop)
    states = []
    for spec in owners:
        verdict.missing.add(spec.index)
        tmp = partial.get(spec.index)
        states.append(
            f"{shard_name(spec.index)}: "
            + (f"unfinished, {tmp.rows_done} of {spec.rows} rows flushed" if tmp else "not written")
        )
    if len(states) > SHOWN_SHARDS:  # a long gap: counts, then the first and last shards
        unfinished = sum(1 for s in owners if s.index in partial)
        states = [
            f"{len(owners)} shards, {unfinished} unfinished and {len(owners) - unfinished} not written",
            *states[:2],
            "...",
            states[-1],
        ]
    where = f" ({'; '.join(states)})" if states else ""
    verdict.problems.append(f"Rows [{start}, {stop}) are missing{where}.")


def completeness(complete: list[ShardHeader], verdict: Verdict, index_of) -> None:
    """A final-named shard must hold exactly stop - start rows, all counted in rows_done."""
    for h in complete:
        expected = h.stop - h.start
        if h.rows != expected or h.rows_done != expected:
            verdict.problems.append(
                f"{h.path.name} rows [{h.start}, {h.stop}) is truncated: it holds {h.rows} rows "
                f"(rows_done {h.rows_done}) of {expected}."
            )
            verdict.redo.add(index_of(h))


def identity(complete: list[ShardHeader], expected: ShardIdentity, verdict: Verdict, index_of) -> None:
    """Every shard has the identity run.json pins (prompt, revision, normalisation, token limit, weights,
    corpus), whatever the other shards have; what it leaves open (dim, pooling) all shards share."""
    # With the weights' fingerprint pinned, it decides: the name or path is only where they were found.
    where = ("model",) if expected.model_fingerprint is not None else ()
    for key in (k for k in IDENTITY_KEYS if k not in where):
        pinned = asdict(expected)[key]
        odd = [h for h in complete if getattr(h.identity, key) != pinned] if pinned is not None else []
        for h in odd[:5]:
            verdict.problems.append(
                f"{h.path.name} has {key} {getattr(h.identity, key)!r}; run.json pins {pinned!r}."
            )
        if len(odd) > 5:
            verdict.problems.append(f"... and {len(odd) - 5} more shards with another {key}.")
        if pinned is None:
            _agree(complete, key, verdict, index_of)
        verdict.redo.update(index_of(h) for h in odd)


def _agree(complete: list[ShardHeader], key: str, verdict: Verdict, index_of) -> None:
    """A value run.json does not pin (dim, pooling; or an older run.json's): the shards' common one."""
    values = Counter(repr(getattr(h.identity, key)) for h in complete)
    if len(values) < 2:
        return
    reference = values.most_common(1)[0][0]
    odd = [h for h in complete if repr(getattr(h.identity, key)) != reference]
    names = ", ".join(f"{h.path.name} has {getattr(h.identity, key)!r}" for h in odd[:5])
    more = f" and {len(odd) - 5} more" if len(odd) > 5 else ""
    verdict.problems.append(f"Shards disagree on {key}: {names}{more}; most have {reference}.")
    verdict.redo.update(index_of(h) for h in odd)


def verify(
    complete: list[ShardHeader],
    partial: dict[int, ShardHeader],
    plan: list[ShardSpec],
    n_rows: int,
    expected: ShardIdentity,
    verdict: Verdict | None = None,
) -> Verdict:
    """All header checks at once, so one message lists everything to fix.

    Args:
        complete: headers of final-named shard files.
        partial: headers of ``.tmp`` files by shard index (for the message only).
        plan: the run's planned shards.
        n_rows: rows of the prepared corpus.
        expected: the identity run.json pins, with the corpus's fingerprint (None fields: not pinned).
    """
    index_of = lambda h: shard_index(h.path)  # noqa: E731
    verdict = verdict if verdict is not None else Verdict()
    completeness(complete, verdict, index_of)
    tiling(complete, partial, plan, n_rows, verdict)
    identity(complete, expected, verdict, index_of)
    return verdict
