"""make search, make index, INDEX=1 and make fetch of an index, through the real CLI (issue 28).

The answers are checked against a brute-force cosine computed here with the real model.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np

from kit.format import RunPaths
from tests.conftest import copy_run
from tests.helpers import make_cli
from tests.search.conftest import QUESTIONS, fetched_copy
from tests.test_second_touch import run_as_printed


def brute_force_top(run: Path, st_model, question: str, k: int = 10) -> list[int]:
    """The rows of the top ``k`` by cosine to ``question``, ties by row, computed here."""
    with h5py.File(run / "embeddings.h5") as h5:
        vectors = h5["embeddings"][:].astype(np.float64)
    query = st_model.encode([question], convert_to_numpy=True)[0].astype(np.float64)
    scores = vectors @ query / np.linalg.norm(vectors, axis=1) / np.linalg.norm(query)
    return sorted(range(len(scores)), key=lambda r: (-scores[r], r))[:k]


def test_make_search_answers_with_the_exact_top_10_in_a_run_and_in_a_fetched_copy(
    merged_run, tmp_path, st_model
):
    questions = tmp_path / "questions.txt"
    questions.write_text("\n".join(QUESTIONS) + "\n")
    for folder in (copy_run(merged_run, tmp_path / "run"), fetched_copy(merged_run, tmp_path / "laptop")):
        out = make_cli("search", RUN=folder, QUERIES=questions).stdout
        assert out.startswith("Exact search of 40 x 384 float32 rows"), out
        assert "no prompt (the model defines no query prompt, and the run's rows had none)" in out, out
        written = json.loads((folder / "search-questions.json").read_text())
        assert [a["query"] for a in written] == QUESTIONS
        for answer in written:
            assert [m["row"] for m in answer["matches"]] == brute_force_top(folder, st_model, answer["query"])
        one = make_cli("search", RUN=folder, QUERY=QUESTIONS[0], K=3).stdout
        rows = brute_force_top(folder, st_model, QUESTIONS[0], 3)
        with h5py.File(folder / "embeddings.h5") as h5:
            titles = [h5["titles"].asstr()[r] for r in rows]
        printed = [ln.split(None, 2)[2] for ln in one.splitlines() if ln.startswith("    ")]
        assert [p.split("  https://")[0] for p in printed] == titles, one


def test_a_model_with_a_query_prompt_embeds_questions_with_it_and_says_so(prompt_run):
    run, model = prompt_run
    out = make_cli("search", RUN=run, QUERY=QUESTIONS[0], K=5).stdout
    assert "the model's query prompt 'query: '" in out, out


def test_an_index_is_built_used_refused_when_stale_and_its_printed_command_rebuilds_it(
    merged_run, prompt_run, tmp_path, st_model
):
    laptop = fetched_copy(merged_run, tmp_path / "laptop")
    assert make_cli("search", RUN=laptop, QUERY=QUESTIONS[0]).stdout.startswith("Exact search")  # no index
    built = make_cli("index", RUN=laptop).stdout
    assert built.startswith("Index: hnsw") and RunPaths.of(laptop).index.exists(), built
    out = make_cli("search", RUN=laptop, QUERY=QUESTIONS[0]).stdout
    assert out.startswith("Index hnsw"), out
    top = [int(ln.split()[0]) for ln in out.splitlines()[2:]]  # after the method and the question
    assert top == list(range(1, 11)), out

    other, _ = prompt_run  # another embeddings.h5 in the same folder: the index no longer matches it
    for name in ("embeddings.h5", "embeddings.h5.sha256"):
        shutil.copy2(other / name, laptop / name)
    stale = make_cli("search", check=False, RUN=laptop, QUERY=QUESTIONS[0])
    message = stale.stderr.strip().splitlines()
    assert stale.returncode == 2 and len(message) <= 2 and "Traceback" not in stale.stderr, stale.stderr
    assert f"make index RUN={laptop}" in message[0], message
    make_cli("index", RUN=laptop)  # as printed
    assert make_cli("search", RUN=laptop, QUERY=QUESTIONS[0]).stdout.startswith("Index ")


def test_index_1_builds_it_after_the_merge_and_make_fetch_brings_it(copied_run, tmp_path):
    run = copied_run
    out = make_cli("submit", RUN=run, INDEX=1, WAIT=1).stdout
    assert "Index: hnsw" in out and RunPaths.of(run).index.exists(), out
    again = make_cli("submit", RUN=run).stdout
    assert "Nothing to do" in again, again  # the index is of this embeddings.h5: nothing is due
    fetched = make_cli("fetch", REMOTE=run, DEST=tmp_path / "laptop").stdout
    assert f"Fetched the search index {tmp_path / 'laptop' / 'embeddings.faiss'}" in fetched, fetched
    assert make_cli("search", RUN=tmp_path / "laptop", QUERY=QUESTIONS[0]).stdout.startswith("Index ")


def test_the_binary_and_int8_copies_are_fetched_alone_and_answer_questions_on_the_laptop(
    copied_run, tmp_path, st_model
):
    run, laptop = copied_run, tmp_path / "laptop"
    missing = make_cli("fetch", REMOTE=run, DEST=laptop, COPY="binary", check=False)
    assert missing.returncode == 2 and f"The run {run} has no embeddings.binary.h5" in missing.stderr
    export = re.search(r"make export RUN=\S+ FORMAT=binary", missing.stderr)
    assert export, missing.stderr
    assert run_as_printed(export.group(0)).returncode == 0  # the command works as printed
    make_cli("export", RUN=run, FORMAT="int8")
    for copy in ("binary", "int8"):
        out = make_cli("fetch", REMOTE=run, DEST=laptop, COPY=copy).stdout
        assert out.startswith(f"Fetched {laptop / f'embeddings.{copy}.h5'}") and "verified" in out, out
    assert not (laptop / "embeddings.h5").exists()  # the small copies travelled alone
    out = make_cli("search", RUN=laptop, QUERY=QUESTIONS[0], K=3).stdout
    assert out.startswith("Binary codes of"), out
    rows = brute_force_top(run, st_model, QUESTIONS[0], 3)
    with h5py.File(run / "embeddings.h5") as h5:
        titles = [h5["titles"].asstr()[r] for r in rows]
    printed = [ln.split(None, 2)[2] for ln in out.splitlines() if ln.startswith("    ")]
    assert [p.split("  https://")[0] for p in printed] == titles, out  # 40 rows: rescored to the exact top 3
