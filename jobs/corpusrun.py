"""The run's prepared corpus: made once, and a new CORPUS= compared with it by content.

The same file unchanged (path, size, mtime) is taken as is, while the run's corpus reads as it
was prepared (kit.corpusfile.corpus_problem). Anything else is prepared beside the run's corpus
as a candidate and compared by fingerprint (sha256 over ids and content hashes): the same content
is fine; other content is a change of what the vectors are. A corpus index may read a parquet
file in the run folder (a converted source): it goes with its index. A run whose corpus no longer
reads as prepared (a partial copy of the folder, a source file touched) is prepared again from its
source, and the candidate replaces it when its rows are the same: no shard is recomputed.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from collections.abc import Iterable

from embedder import corpus as corpus_lib
from embedder.corpus import CorpusOptions
from jobs.runstate import CorpusRecord
from kit.atomic import TMP_SUFFIX
from kit.commands import make_command
from kit.corpusfile import corpus_info, corpus_problem, remove_corpus, run_files
from kit.errors import ConfigError
from kit.format import RunPaths

log = logging.getLogger(__name__)
CANDIDATE_SUFFIX = ".candidate"


def candidate_path(run_dir: Path, suffix: str = CANDIDATE_SUFFIX) -> Path:
    """Where a changed corpus is prepared beside corpus.h5 before it replaces it."""
    corpus = RunPaths.of(run_dir).corpus
    return corpus.with_name(corpus.name + suffix)


RECORDS_SOURCE = "records"
READING_OPTIONS = ("csv_delimiter",)  # how the source is read, not what the rows are: the fingerprint tells


@dataclass(frozen=True)
class CorpusCheck:
    """The corpus a submit will use, and whether it differs from the run's."""

    record: CorpusRecord
    candidate: Path | None = None  # a prepared corpus that differs from the run's (to refuse or install)
    changes: dict[str, tuple[Any, Any]] | None = None


def source_stat(source: str) -> tuple[int, int] | None:
    """(total size, newest mtime_ns) of a file, a folder's files or a glob's matches; None if unknown."""
    path = Path(source)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
    else:
        files = [Path(p) for p in glob.glob(source) if Path(p).is_file()]
    if not files:
        return None
    stats = [os.stat(p) for p in files]
    return sum(s.st_size for s in stats), max(s.st_mtime_ns for s in stats)


def _source_text(source: Path | str) -> str:
    """A path as recorded: absolute, so tasks and later submits from another folder find it."""
    text = str(source)
    return text if any(c in text for c in "*?[") else str(Path(text).expanduser().resolve())


def prepare(out: Path, source: str, options: CorpusOptions, records: Iterable[Any] | None) -> CorpusRecord:
    """Prepare ``source`` (or ``records``) into ``out`` and describe it."""
    if records is not None:
        summary = corpus_lib.prepare(records, out, options, source)
    else:
        summary = corpus_lib.prepare_source(Path(source), out, options)
    if summary.rejected:
        log.warning(
            "%s They are listed under /rejected.", corpus_lib.refusal_message(summary).splitlines()[0]
        )
    info = corpus_info(out)
    return CorpusRecord(
        source=source,
        rows=info.rows,
        source_rows=info.source_rows,
        rejected_rows=info.rejected_rows,
        fingerprint=info.fingerprint,
        options=options,
        source_stat=None if records is not None else source_stat(source),
    )


def first_corpus(
    run_dir: Path, corpus: Path | None, options: CorpusOptions, records: Iterable[Any] | None
) -> CorpusRecord:
    """The corpus of a new run: prepared from CORPUS (or records) into ``<run>/corpus.h5``."""
    if corpus is None and records is None:
        raise ConfigError(
            f"Run {run_dir} has no corpus yet: pass CORPUS=<file or folder>, e.g. "
            f"{make_command('submit', RUN=run_dir)} CORPUS=corpus.jsonl MODEL=<model>"
        )
    source = RECORDS_SOURCE if records is not None or corpus is None else _source_text(corpus)
    return prepare(RunPaths.of(run_dir).corpus, source, options, records)


def check_corpus(
    run_dir: Path,
    old: CorpusRecord,
    corpus: Path | None,
    options: CorpusOptions,
    records: Iterable[Any] | None,
) -> CorpusCheck:
    """Compare what this submit names with the run's corpus, preparing a candidate only when needed.

    A run corpus that no longer reads as prepared is prepared again from CORPUS (or the run's source).
    """
    damaged = corpus_problem(RunPaths.of(run_dir).corpus)
    if not damaged and corpus is None and records is None and options == old.options:
        return CorpusCheck(old)
    source = RECORDS_SOURCE if records is not None else _source_text(corpus) if corpus else old.source
    if not damaged and records is None and _unchanged(source, options, old):
        return CorpusCheck(old)
    if records is None and source_stat(source) is None:
        raise ConfigError(_missing_source(run_dir, source, corpus, damaged))
    if damaged:
        log.warning(
            "Run %s: its corpus does not read as prepared (%s); preparing it again from %s.",
            run_dir,
            damaged,
            source,
        )
    candidate = candidate_path(run_dir)
    remove_corpus(candidate)
    record = prepare(candidate, source, options, records)
    changes = _changes(old, record, options)
    if not changes:  # the same rows: the run's record stays, with where and how they were read
        same = replace(old, source=record.source, source_stat=record.source_stat, options=options)
        if damaged:
            return CorpusCheck(same, candidate)  # installed in place of the damaged one
        remove_corpus(candidate)
        return CorpusCheck(same)
    return CorpusCheck(record, candidate, changes)


def _unchanged(source: str, options: CorpusOptions, old: CorpusRecord) -> bool:
    """The run's own source file, unchanged (size, mtime), with the same options."""
    return (
        source == old.source
        and options == old.options
        and old.source_stat is not None
        and source_stat(source) == old.source_stat
    )


def _missing_source(run_dir: Path, source: str, corpus: Path | None, damaged: str | None) -> str:
    """Why a corpus cannot be prepared: its source is not there."""
    if damaged:
        return (
            f"Run {run_dir}: its corpus does not read as prepared ({damaged}), and its source {source} "
            f"does not exist to prepare it again: {make_command('submit', RUN=run_dir)} CORPUS=<where it is now>"
        )
    needed = (
        "" if corpus else " (the run's source, needed to apply the new field options); pass CORPUS=<file>"
    )
    return f"Corpus {source} does not exist{needed}."


def _changes(old: CorpusRecord, record: CorpusRecord, options: CorpusOptions) -> dict[str, tuple[Any, Any]]:
    """Field -> (old, new) of what the vectors or their metadata would change; empty for the same rows."""
    changes = {
        k: (getattr(old.options, k), getattr(options, k))
        for k in vars(options)
        if k not in READING_OPTIONS and getattr(old.options, k) != getattr(options, k)
    }
    same_file = (
        record.source == old.source and old.source_stat is not None and record.source_stat == old.source_stat
    )
    if record.fingerprint != old.fingerprint and not (
        changes and same_file
    ):  # options alone: not "another file"
        changes["corpus"] = (
            f"{old.source} ({old.rows} rows, {old.fingerprint[:12]})",
            f"{record.source} ({record.rows} rows, {record.fingerprint[:12]})",
        )
    return changes


def install_candidate(run_dir: Path, candidate: Path) -> None:
    """REDO=all with a new corpus: the candidate becomes the run's corpus (atomic rename).

    The run-folder parquet of the corpus it replaces (a converted source) is deleted after.
    """
    current = RunPaths.of(run_dir).corpus
    old_files = run_files(current) if current.is_file() else []
    os.replace(candidate, current)
    for path in set(old_files) - set(run_files(current)):
        path.unlink(missing_ok=True)


def discard_candidate(run_dir: Path) -> None:
    """Delete the candidate corpus of ``run_dir`` (and its half-written file), leaving the run's corpus."""
    remove_corpus(candidate_path(run_dir))
    for suffix in (CANDIDATE_SUFFIX, CANDIDATE_SUFFIX + TMP_SUFFIX):
        candidate_path(run_dir, suffix).unlink(missing_ok=True)
