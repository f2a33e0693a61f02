"""run.json's canary: the texts every shard also embeds, chosen once per run at submit (kit/canary.py).

The texts are corpus rows spread over the corpus (each cut to ``CANARY_CHARS`` characters), so they
look like the work. They stay as chosen while the run's corpus does; a new corpus (REDO=all with
another one) chooses anew, as does a run.json made before canaries existed. ``CANARY_MIN_COSINE=``
may change the tolerance on any submit: it is a check, not part of what the vectors are.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jobs.runstate import RunState
from kit.canary import CANARY_CHARS, DEFAULT_MIN_COSINE, canary_record, canary_rows
from kit.corpusfile import CorpusReader
from kit.format import RunPaths


def corpus_canary_texts(run_dir, n_rows: int) -> tuple[list[str], list[int]]:
    """The canary texts of a prepared corpus and the rows they come from."""
    rows = canary_rows(n_rows)
    with CorpusReader(RunPaths.of(run_dir).corpus) as reader:
        texts = [str(reader.read(row, row + 1)["texts"][0])[:CANARY_CHARS] for row in rows]
    return texts, rows


def settled_canary(
    run_dir, state: RunState, saved: RunState | None, min_cosine: float | None
) -> dict[str, Any]:
    """run.json's ``canary`` after this submit: the saved one while the corpus is the same, else chosen
    now; with ``min_cosine`` (CANARY_MIN_COSINE=) where given."""
    kept = saved.canary if saved is not None else None
    if kept and saved is not None and saved.corpus.fingerprint == state.corpus.fingerprint:
        record = dict(kept)
    else:
        texts, rows = corpus_canary_texts(run_dir, state.corpus.rows)
        tolerance = (kept or {}).get("min_cosine", DEFAULT_MIN_COSINE)
        record = canary_record(texts, rows, tolerance)
    if min_cosine is not None:
        record["min_cosine"] = float(min_cosine)
    return record


def with_canary(run_dir, state: RunState, saved: RunState | None, min_cosine: float | None) -> RunState:
    """``state`` with its canary settled (``settled_canary``)."""
    return replace(state, canary=settled_canary(run_dir, state, saved, min_cosine))
