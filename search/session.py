"""A run folder opened for questions: the entry point for ``make search`` and the map's page.

``open_search(run_dir)`` picks how to search from what the folder holds (``method="auto"``):
the index beside embeddings.h5 where there is one (checked; a stale one is refused, never
skipped), else exact search of embeddings.h5, else, in a folder holding only the smaller copies,
the binary codes rescored with the int8 copy where it is there. ``Searcher.search(texts, k)``
encodes the questions (``search.query``: the model is loaded on the first question, once) and
returns the top k of each, named by the file's ``ids``/``titles``/``urls``.

>>> with open_search("runs/demo") as searcher:
...     print(searcher.describe())                       # how it searches, and the prompt it uses
...     for answer in searcher.search(["Which river flows through Cairo?"], k=10):
...         for m in answer.matches:
...             print(m.rank, f"{m.score:.3f}", m.fields["title"], m.fields["url"])

``Searcher.search_vectors`` takes vectors already encoded (the map's questions, in map.h5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedder.config import ComputeSettings
from kit.commands import make_command
from kit.errors import ConfigError
from kit.format import BINARY_FILE, RunPaths
from search.compact import compact_search
from search.compactfile import open_binary, open_int8
from search.exact import exact_search
from search.index import SearchIndex, open_index
from search.topk import Hits
from search.vectors import RowNamer, TextFields, VectorFile

if TYPE_CHECKING:  # the model stack loads with the first question, not with the folder
    from search.query import QueryEncoder, QueryPrompt

METHODS = ("auto", "exact", "index", "binary")


@dataclass(frozen=True)
class Match:
    """One row found for a question."""

    rank: int  # 1 for the best
    row: int  # row of the searched dataset
    score: float  # cosine similarity (for binary codes alone: the one their Hamming distance suggests)
    fields: dict[str, str]  # the row's names: id, title, url (and topic) for a document run


@dataclass(frozen=True)
class Answer:
    """The rows found for one question, best first."""

    query: str
    matches: list[Match]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: ``{"query": ..., "matches": [{"rank", "row", "score", "fields"}, ...]}``."""
        return asdict(self)


class Searcher:
    """A run folder's rows, the way they are searched, and (on the first question) its query encoder."""

    def __init__(
        self,
        paths: RunPaths,
        method: str,
        parts: dict[str, Any],
        model: str | None,
        compute: ComputeSettings | None,
    ):
        """Use ``open_search``: it picks ``method`` and opens ``parts`` (vectors, index, codes, int8)."""
        self.paths, self.method, self.parts = paths, method, parts
        self.identity_file: Path = parts["names"]
        self.namer: RowNamer = TextFields(parts["names"])  # another RowNamer names passages, say
        self._model, self._compute = model, compute
        self._encoder: QueryEncoder | None = None

    @property
    def encoder(self) -> QueryEncoder:
        if self._encoder is None:
            from search.query import load_query_encoder

            self._encoder = load_query_encoder(self.identity_file, self._model, self._compute)
        return self._encoder

    @property
    def prompt(self) -> QueryPrompt:
        return self.encoder.prompt

    def describe(self) -> str:
        """How this folder is searched: ``exact search of 2,000 x 384 float32 rows in ...``."""
        parts = self.parts
        if self.method == "index":
            return f"index {parts['index'].record.describe()}, rescored from {self.paths.output}"
        if self.method == "binary":
            rescorer = f"rescored with {parts['int8'].path.name}" if parts.get("int8") else "not rescored"
            return f"binary codes of {parts['codes'].path}, {rescorer}"
        vectors = parts["vectors"]
        return f"exact search of {vectors.rows:,} x {vectors.dim} float32 rows in {vectors.path}"

    def search_vectors(self, vectors: np.ndarray, k: int = 10) -> Hits:
        """The top ``k`` rows for query vectors float [Q, D] (normalised here), with this folder's method."""
        parts = self.parts
        if self.method == "index":
            return parts["index"].search(parts["vectors"], vectors, k)
        if self.method == "binary":
            return compact_search(parts["codes"], vectors, k, rescorer=parts.get("int8"))
        return exact_search(parts["vectors"], vectors, k)

    def search(self, queries: list[str], k: int = 10) -> list[Answer]:
        """Encode ``queries`` with the run's model and query prompt, and answer each with its top ``k``."""
        return self.answers(queries, self.search_vectors(self.encoder.encode(list(queries)), k))

    def answers(self, queries: list[str], hits: Hits) -> list[Answer]:
        """``hits`` (row i answers ``queries[i]``) with each row named by ``namer`` (one read for all)."""
        names = iter(self.namer(hits.rows[hits.rows >= 0]))  # row-major: query by query, best first
        out = []
        for text, rows, scores in zip(queries, hits.rows, hits.scores):
            kept = [(int(r), float(s)) for r, s in zip(rows, scores) if r >= 0]
            out.append(Answer(text, [Match(j + 1, r, s, next(names)) for j, (r, s) in enumerate(kept)]))
        return out

    def close(self) -> None:
        """Close the files this searcher holds open."""
        for part in self.parts.values():
            if hasattr(part, "close"):
                part.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_search(
    run_dir: str | Path,
    method: str = "auto",
    model: str | None = None,
    compute: ComputeSettings | None = None,
) -> Searcher:
    """Open ``run_dir`` (a run folder, or a fetched one) for questions.

    Args:
        run_dir: the folder holding embeddings.h5 (or only its int8/binary copies).
        method: ``auto`` (index, else exact, else binary: module docstring), or one of
            ``exact``, ``index`` (refused where there is none), ``binary``.
        model: the run's model at another place here; None uses the one the file names.
        compute: device and dtype for the queries; None: float32 on the best device here.

    Raises:
        ConfigError: nothing to search, an unknown method, or a part it needs is missing;
            ``search.indexfile.IndexMismatchError`` for a stale or damaged index.
    """
    if method not in METHODS:
        raise ConfigError(f"Unknown search method {method!r}. Choose from: {', '.join(METHODS)}.")
    paths = RunPaths.of(Path(run_dir))
    chosen, parts = _open_parts(paths, method)
    return Searcher(paths, chosen, parts, model, compute)


def _open_parts(paths: RunPaths, method: str) -> tuple[str, dict[str, Any]]:
    """(method used, the files it needs, opened)."""
    source = paths.output
    if method == "binary" or (method == "auto" and not source.exists()):
        return "binary", _compact_parts(paths)
    if not source.exists():
        raise ConfigError(
            f"{paths.root} has no {source.name} to search. Bring it with make fetch, or finish the run "
            f"({make_command('status', RUN=paths.root)} says how)."
        )
    index: SearchIndex | None = None if method == "exact" else open_index(source, required=method == "index")
    parts: dict[str, Any] = {"vectors": VectorFile(source), "names": source}
    if index is not None:
        return "index", {**parts, "index": index}
    return "exact", parts


def _compact_parts(paths: RunPaths) -> dict[str, Any]:
    codes = open_binary(paths.output)
    if codes is None:
        raise ConfigError(
            f"{paths.root} has neither {paths.output.name} nor {BINARY_FILE} to search. Bring one with "
            f"make fetch, or write the binary copy: {make_command('export', RUN=paths.root, FORMAT='binary')}"
        )
    return {"codes": codes, "int8": open_int8(paths.output), "names": codes.path}
