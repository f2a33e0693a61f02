"""make search and make index: ask a run's rows questions, on the cluster or in a fetched folder.

The search itself is ``search.session``; here are the verbs' printouts and the index stage's task.
``make search`` loads the model once for all the questions (``QUERY=`` or a ``QUERIES=`` file,
one question a line, or a map's questions JSON) and says which prompt and which method it used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from kit import atomic
from kit.commands import make_command
from kit.errors import ConfigError

if TYPE_CHECKING:
    from search.session import Answer

EXCERPT_CHARS = 100  # a row's title or passage excerpt in the printout
PRINTED_QUESTIONS = 3  # QUERIES=file: the first few are printed, all are written


def read_queries(path: Path) -> list[str]:
    """Questions from ``path``: a map's questions JSON (``question`` of each), else one question a line."""
    if not path.is_file():
        raise ConfigError(f"QUERIES={path}: no such file. Give a text file, one question a line.")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        from knowledgemap.questions import load_questions

        return [q.text for q in load_questions(path)]
    queries = [line.strip() for line in text.splitlines() if line.strip()]
    if not queries:
        raise ConfigError(f"QUERIES={path} holds no question (one question a line).")
    return queries


def results_path(queries_file: Path, run_dir: Path) -> Path:
    """Where QUERIES=file's answers are written: ``<run>/search-<file stem>.json``."""
    return run_dir / f"search-{queries_file.stem}.json"


def answer_lines(answer: Answer) -> list[str]:
    """The printout of one question: the question, then rank, score, title and url of each row."""
    lines = [f"Q: {answer.query}"]
    for m in answer.matches:
        title = m.fields.get("title") or m.fields.get("id", "")
        title = title if len(title) <= EXCERPT_CHARS else title[: EXCERPT_CHARS - 3] + "..."
        url = f"  {m.fields['url']}" if m.fields.get("url") else ""
        lines.append(f"  {m.rank:>3}  {m.score:.4f}  {title}{url}")
    return lines


def search_run(run_dir: Path, query: str | None, queries: Path | None, k: int, model: str | None) -> str:
    """``make search``: the top ``k`` rows of each question, printed; with QUERIES=, also written to JSON."""
    from search.session import open_search

    if bool(query) == bool(queries):
        raise ConfigError(
            "Give one question with QUERY='...' or a file of them with QUERIES=<file>, e.g. "
            f"{make_command('search', RUN=run_dir, QUERY='Which river flows through Cairo?')}"
        )
    texts = read_queries(queries) if queries else [str(query)]
    with open_search(run_dir, model=model) as searcher:
        answers = searcher.search(texts, k)
        how = searcher.describe()  # "exact search of ...", "index ...", "binary codes of ..."
        head = [f"{how[0].upper()}{how[1:]}; questions embedded with {searcher.prompt.describe()}."]
    shown = answers if queries is None else answers[:PRINTED_QUESTIONS]
    lines = head + [line for answer in shown for line in answer_lines(answer)]
    if queries is not None:
        out = results_path(queries, run_dir)
        atomic.write_text(
            out, json.dumps([a.to_dict() for a in answers], indent=1, ensure_ascii=False) + "\n"
        )
        more = f" (the first {len(shown)} above)" if len(answers) > len(shown) else ""
        lines.append(f"Wrote the top {k} of {len(answers)} questions to {out}{more}")
    return "\n".join(lines)


def index_task(run_dir: Path) -> str:
    """The index stage (INDEX=1) and make index: build, tune and measure the index beside embeddings.h5."""
    from kit.format import RunPaths
    from search.index import build_index

    record = build_index(RunPaths.of(run_dir).output)
    return f"Index: {record.describe()}"
