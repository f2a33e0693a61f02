"""REUSE=: the files around reusing an earlier run's vectors (the pure part is kit/reuse.py).

At plan/submit the earlier ``embeddings.h5`` is checked against its sidecar and its embedding
identity against this run's, before any job; then this corpus's rows are matched on (id, content
hash) and the match is written to ``reuse.h5`` in the run folder. The embed task copies the
matched vectors into its shard (``ShardReuse``), so the merge checks them as any row; the merge
records per row whether it was reused (``merge.reused.record_in_output``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Iterator

import numpy as np

from embedder.passages import ChunkPassages, interleave
from kit import atomic
from kit.commands import make_command
from kit.corpusfile import CorpusReader, corpus_info, row_costs
from kit.errors import ConfigError, ShardError
from kit.format import (
    CONTENT_HASH,
    OUTPUT_FORMAT,
    PASSAGE_EMBEDDINGS,
    PASSAGE_PTR,
    PASSAGE_SPAN,
    PASSAGE_TOKENS,
    REUSE_FORMAT,
    RunPaths,
    parse_sidecar,
    sidecar_path,
)
from kit.h5files import open_h5
from kit.reuse import (
    NOT_REUSED,
    describe_differences,
    identity_differences,
    left_costs,
    match_rows,
)
from kit.reusefile import SOURCE_ROW, read_map as _read_map
from kit.shardfile import ShardIdentity, ShardSpec, output_identity


@dataclass(frozen=True)
class Earlier:
    """An earlier merged file, verified and of the same embedding identity as this run."""

    path: Path
    sha256: str
    size: int
    mtime_ns: int
    identity: ShardIdentity  # its embedding identity, checked again by each task


@dataclass(frozen=True)
class ReuseRecord:
    """What run.json says about REUSE: the file, its sha256 and the counts."""

    source: str
    source_sha256: str
    reused_rows: int
    computed_rows: int


def earlier_output(path: Path) -> Path:
    """The earlier ``embeddings.h5`` named by REUSE: a run folder (a fetched one too) or the file itself."""
    path = Path(path).expanduser().resolve()
    output = RunPaths.of(path).output if path.is_dir() else path
    if not output.is_file():
        raise ConfigError(
            f"REUSE={path}: there is no {output.name} there. REUSE takes an earlier run folder that "
            "holds embeddings.h5 and embeddings.h5.sha256 (on the cluster, or after make fetch), "
            "or the embeddings.h5 itself."
        )
    return output


def verify_earlier(output: Path) -> str:
    """The sha256 of ``output``, checked against its sidecar (a damaged or replaced file is refused)."""
    sidecar = sidecar_path(output)
    if not sidecar.is_file():
        raise ConfigError(
            f"REUSE: {output} has no {sidecar.name}, so it is not a verified merge. Merge it again "
            f"({make_command('merge', RUN=output.parent)}) or fetch it again with make fetch."
        )
    try:
        expected, _ = parse_sidecar(sidecar.read_text())
    except ValueError as err:
        raise ConfigError(f"REUSE: {sidecar} is damaged ({err}). Fetch or merge that run again.") from err
    actual = atomic.sha256_file(output)
    if actual != expected:
        raise ConfigError(
            f"REUSE: {output} has SHA-256 {actual[:16]}..., but {sidecar.name} says {expected[:16]}...: "
            "the file is damaged or was replaced. Fetch or merge that run again."
        )
    return actual


def run_identity(identity, fingerprint: str, cache_dir: str | None, profile: str | None) -> ShardIdentity:
    """This run's embedding identity as the tasks will record it: the model is loaded on the CPU once."""
    from embedder import model as model_lib
    from embedder.config import ComputeSettings
    from embedder.loader import load_encoder

    model_lib.resolve_model(identity, cache_dir, profile)  # a missing model named with the profile's cache
    compute = ComputeSettings(device="cpu", compute_dtype="float32", cache_dir=cache_dir)
    return load_encoder(identity, compute).shard_identity(fingerprint, None)


def check_earlier(reuse: Path, this_identity: ShardIdentity) -> Earlier:
    """Verify the earlier file and compare its identity with this run's; a refusal names each difference."""
    output = earlier_output(reuse)
    digest = verify_earlier(output)
    with open_h5(output) as h5:
        if h5.attrs.get("format") != OUTPUT_FORMAT or "embeddings" not in h5:
            raise ConfigError(
                f"REUSE: {output} is not a merged embeddings file (format {h5.attrs.get('format')!r})."
            )
        if CONTENT_HASH not in h5:
            raise ConfigError(
                f"REUSE: {output} has no per-row content hashes (its corpus was prepared before "
                "embedkit-corpus/2), so unchanged rows cannot be told apart. Run without REUSE."
            )
        identity = output_identity(h5.attrs)
        differences = identity_differences(identity, this_identity)
    if differences:
        lines = "\n".join(f"  - {line}" for line in describe_differences(differences))
        raise ConfigError(
            f"REUSE={output}: its vectors were made differently from this run's, so none can be "
            f"reused; nothing was submitted:\n{lines}\nRun with that run's settings, or without REUSE."
        )
    stat = os.stat(output)
    return Earlier(output, digest, stat.st_size, stat.st_mtime_ns, identity)


def record_match(run_dir: Path, earlier: Earlier) -> ReuseRecord:
    """Match this run's corpus rows with the earlier file's and write ``reuse.h5`` atomically."""
    paths = RunPaths.of(run_dir)
    with CorpusReader(paths.corpus) as corpus:  # ids come from the source (the index holds none)
        ids = np.array([i.encode() for i in corpus.ids(0, corpus.rows)], dtype=object)
        hashes = corpus.content_hashes(0, corpus.rows)
    with open_h5(earlier.path) as old:
        source_rows = match_rows(old["ids"][:], old[CONTENT_HASH][:], ids, hashes)
    reused = int((source_rows != NOT_REUSED).sum())
    record = ReuseRecord(str(earlier.path), earlier.sha256, reused, len(source_rows) - reused)
    tmp = atomic.tmp_path(paths.reuse)
    with atomic.removed_on_error(tmp):
        with open_h5(tmp, "w") as h5:
            h5.create_dataset(SOURCE_ROW, data=source_rows)
            h5.attrs.update(
                format=REUSE_FORMAT,
                source_size=earlier.size,
                source_mtime_ns=earlier.mtime_ns,
                source_identity=json.dumps(earlier.identity.to_attrs()),
                corpus_fingerprint=corpus_info(paths.corpus).fingerprint,
                **asdict(record),
            )
        atomic.commit(tmp, paths.reuse)
    return record


def plan_costs(run_dir: Path, max_seq_length: int | None = None, overlap: int | None = None) -> np.ndarray:
    """The cost of each row that is left to compute (``kit.corpusfile.row_costs``; a reused row costs ~0).

    ``overlap``: PASSAGES=1, the rows are documents cut into windows of ``max_seq_length`` tokens."""
    costs = row_costs(RunPaths.of(run_dir).corpus, max_seq_length, overlap)
    found = _read_map(run_dir)
    return costs if found is None else left_costs(costs, found[0])


def summary_line(run_dir: Path) -> str | None:
    """``Reuse: 1,960 rows ... 220 rows computed``, for make plan and make status; None without REUSE."""
    found = _read_map(run_dir)
    if found is None:
        return None
    _, attrs = found
    return (
        f"Reuse: {attrs['reused_rows']:,} rows take their vectors from {attrs['source']} (sha256 "
        f"{str(attrs['source_sha256'])[:12]}...); {attrs['computed_rows']:,} rows are computed"
    )


class ShardReuse:
    """One shard's reused rows in the embed task: the texts to compute, then the chunk filled in."""

    def __init__(self, run_dir: Path, spec: ShardSpec, source_rows: np.ndarray, attrs: dict[str, Any]):
        self.spec, self.attrs = spec, attrs
        self.source = Path(attrs["source"])
        self.source_rows = source_rows[spec.start : spec.stop]
        stat = os.stat(self.source) if self.source.is_file() else None
        if stat is None or (stat.st_size, stat.st_mtime_ns) != (
            attrs["source_size"],
            attrs["source_mtime_ns"],
        ):
            raise ShardError(
                f"{spec.describe()}: REUSE file {self.source} is gone or changed since the plan "
                f"(sha256 {str(attrs['source_sha256'])[:12]}...). Plan again: "
                f"{make_command('submit', RUN=run_dir, REUSE=self.source)}"
            )
        self.h5 = open_h5(self.source)
        self.computed = 0  # rows given to the model in this attempt

    @classmethod
    def of(cls, run_dir: Path, spec: ShardSpec, identity: ShardIdentity) -> ShardReuse | None:
        """The shard's reuse, or None where it copies no row. ``identity``: what this task's shard records;
        the earlier file's must still be the same (run.json may have changed since the plan)."""
        found = _read_map(run_dir)
        if found is None or not (found[0][spec.start : spec.stop] != NOT_REUSED).any():
            return None
        earlier = ShardIdentity.from_attrs(json.loads(found[1]["source_identity"]))
        differences = identity_differences(earlier, identity)
        if differences:
            raise ShardError(
                f"{spec.describe()}: the REUSE file {found[1]['source']} holds vectors made otherwise "
                f"({'; '.join(describe_differences(differences))}). Plan again with REUSE= and the "
                f"same settings, or recompute without it: {make_command('submit', RUN=run_dir, REDO='all')}"
            )
        return cls(run_dir, spec, *found)

    def close(self) -> None:
        """Close the REUSE file."""
        self.h5.close()

    def shard_attrs(self, prior: Any) -> dict[str, Any]:
        """Recorded in the shard: rows copied, rows the model computed (over all attempts), and the file."""
        return {
            "reused_rows": int((self.source_rows != NOT_REUSED).sum()),
            "reuse_sha256": self.attrs["source_sha256"],
            "computed_rows": int(prior.get("computed_rows", 0)) + self.computed,
        }

    def to_compute(
        self, chunks: Iterable[tuple[int, list[str], list[str]]]
    ) -> Iterator[tuple[int, list[str], Any]]:
        """``(start, texts of the rows to compute, (ids, their source rows))`` for each corpus chunk."""
        for start, texts, ids in chunks:
            rows = self.source_rows[start - self.spec.start : start - self.spec.start + len(ids)]
            texts = [t for t, r in zip(texts, rows) if r == NOT_REUSED]
            self.computed += len(texts)
            yield start, texts, (ids, rows)

    def fill(
        self,
        start: int,
        extra: tuple[list[str], np.ndarray],
        computed: np.ndarray,
        passages: ChunkPassages | None = None,
    ) -> tuple[list[str], np.ndarray, ChunkPassages | None]:
        """The chunk's ids, vectors and (PASSAGES=1) passages: computed rows from the model, the others copied
        from the earlier file, a document with all its passages.

        The earlier file's ids at the copied rows must be this chunk's ids (the file was checked at plan).
        """
        ids, out = self._fill_rows(extra, computed)
        if passages is None:
            return ids, out, None
        rows = extra[1]
        reused = rows != NOT_REUSED
        if not reused.any():
            return ids, out, passages
        return ids, out, interleave(reused, passages, self._earlier_passages(rows[reused]))

    def _earlier_passages(self, rows: np.ndarray) -> ChunkPassages:
        """The passages of the earlier file's documents ``rows`` (in that order), as a chunk."""
        wanted, back = np.unique(rows, return_inverse=True)  # h5py reads increasing rows
        ptr = self.h5[PASSAGE_PTR]
        lo, hi = ptr[wanted][back], ptr[wanted + 1][back]
        parts = [slice(int(a), int(b)) for a, b in zip(lo, hi)]
        emb, span, tokens = (self.h5[name] for name in (PASSAGE_EMBEDDINGS, PASSAGE_SPAN, PASSAGE_TOKENS))
        return ChunkPassages(
            np.r_[0, np.cumsum(hi - lo)].astype(np.int64),
            np.concatenate([span[p] for p in parts]).reshape(-1, 2),
            np.concatenate([tokens[p] for p in parts]).astype(np.int32),
            np.concatenate([emb[p] for p in parts]).astype(np.float32, copy=False),
        )

    def _fill_rows(
        self, extra: tuple[list[str], np.ndarray], computed: np.ndarray
    ) -> tuple[list[str], np.ndarray]:
        """The chunk's ids and document vectors, computed or copied."""
        ids, rows = extra
        reused = rows != NOT_REUSED
        out = np.empty((len(ids), computed.shape[1]), dtype=np.float32)
        out[~reused] = computed
        if reused.any():
            wanted, back = np.unique(rows[reused], return_inverse=True)  # h5py reads increasing rows
            out[reused] = self.h5["embeddings"][wanted][back]
            earlier_ids = self.h5["ids"][wanted][back]
            mine = np.array([i.encode() for i, r in zip(ids, reused) if r], dtype=object)
            if not np.array_equal(earlier_ids, mine):
                bad = int(np.flatnonzero(earlier_ids != mine)[0])
                raise ShardError(
                    f"{self.spec.describe()}: REUSE file {self.source} row {int(rows[reused][bad])} "
                    f"has id {earlier_ids[bad]!r}, not {mine[bad]!r}; it changed since the plan."
                )
        return ids, out


def check_request(
    reuse: Path | None, identity, fingerprint: str, cache_dir: str | None, profile: str | None
) -> Earlier | None:
    """REUSE= at plan/submit, before the corpus is prepared and before any job: the verified earlier file."""
    if reuse is None:
        return None
    return check_earlier(reuse, run_identity(identity, fingerprint, cache_dir, profile))


def current_record(run_dir: Path, drop: bool = False) -> dict[str, Any] | None:
    """What run.json records of the run's reuse.h5, while it is for the run's corpus.

    ``drop``: the run's identity or corpus changed, or REDO=all, without a new REUSE=: the match is
    deleted, so no stale vector is copied.
    """
    if drop:
        RunPaths.of(run_dir).reuse.unlink(missing_ok=True)
    found = _read_map(run_dir)
    if found is None:
        return None
    attrs = found[1]
    return asdict(
        ReuseRecord(
            str(attrs["source"]),
            str(attrs["source_sha256"]),
            int(attrs["reused_rows"]),
            int(attrs["computed_rows"]),
        )
    )
