"""run.json: the one recorded truth about a run, as frozen typed records, written atomically.

What the vectors are (identity, corpus) is fixed when the run is created; how they are computed
(compute settings) may change on a re-submit; the plan is fixed; jobs are appended as they are
submitted. Whether a shard is done is never stored here: the shard files are the truth
(``kit.shardfile.done_shards``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from embedder.config import ComputeSettings, CorpusOptions, EmbedIdentity
from kit import atomic
from kit.commands import make_command
from kit.errors import ConfigError
from kit.format import RunPaths
from kit.shardfile import ShardIdentity, ShardSpec
from slurm.backend import JobRecord

RUN_FORMAT = (
    "embedkit-run/3"  # /3: stage_options; identity.model_revision (/2: map_options, export_format, revision)
)
V2_FORMAT = "embedkit-run/2"
OLD_FORMATS = ("embedkit-run/1",)


@dataclass(frozen=True)
class CorpusRecord:
    """The prepared corpus a run was planned on."""

    source: str  # the file or folder it was prepared from ("records" for the demo)
    rows: int  # rows embedded
    source_rows: int  # rows read from the source
    rejected_rows: int  # rows left out (SKIP_BAD_ROWS), listed under /rejected
    fingerprint: str  # sha256 over ids and texts: same content, same fingerprint
    options: CorpusOptions  # field mapping and SKIP_BAD_ROWS
    source_stat: tuple[int, int] | None = None  # (size, mtime_ns) of the source when prepared


@dataclass(frozen=True)
class RunState:
    """Everything about a run that is not in its shard files."""

    identity: EmbedIdentity  # what the vectors are; the revision is pinned at submit
    model_fingerprint: str  # sha256 of the weights, pinned at submit
    corpus: CorpusRecord
    plan: tuple[ShardSpec, ...]
    requested_shards: int  # SHARDS as asked (the plan may hold fewer: never more shards than rows)
    compute: ComputeSettings  # how the latest submission computes
    created_at: str
    jobs: tuple[JobRecord, ...] = ()
    scheduler_version: str | None = None  # e.g. "slurm 22.05.8", detected once at submit
    profile: str | None = None  # where the latest submit (or plan) sends the jobs: local, or a profile
    # What every shard must record, fixed at submit (None: an older run.json).
    pinned: ShardIdentity | None = None
    reuse: dict[str, Any] | None = None  # REUSE=: source, source_sha256, reused_rows, computed_rows
    # What summaries call the model: its hub name, or a folder's model card title.
    model_name: str | None = None
    # Rows longer than max_seq_length and the text they lose, counted at plan (embedder/truncation.py).
    truncation: dict[str, Any] | None = None
    # The optional stages the run asked for (MAP=1, EXPORT=npy, ...): stage name -> its task's options.
    stage_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # The canary texts every shard also embeds, chosen once at submit (jobs/canaryset.py, kit/canary.py):
    # texts, rows (of the corpus), sha256, min_cosine (the merge's tolerance). None: an older run.json.
    canary: dict[str, Any] | None = None

    def with_jobs(self, *jobs: JobRecord) -> RunState:
        """A copy of this state with ``jobs`` appended to its job records."""
        return replace(self, jobs=(*self.jobs, *jobs))

    def latest_profile(self) -> str | None:
        """The run's profile, else the profile of its last job; ``None`` if neither is known."""
        return self.profile or (self.jobs[-1].profile if self.jobs else None)

    def latest_task_of_shards(self) -> dict[int, tuple[JobRecord, str]]:
        """Shard index -> (its latest job of an array stage, the task id running it)."""
        out = {}
        for job in self.jobs:
            if job.shards:
                for shard in job.shards:
                    out[shard] = (job, job.task_of(shard))
        return out

    def latest_stage_jobs(self) -> dict[str, JobRecord]:
        """The latest job of each whole-run stage (merge, map, ...): those without shards."""
        return {job.stage: job for job in self.jobs if not job.shards}


def manifest_path(run_dir: Path) -> Path:
    """The path of the run manifest of ``run_dir``."""
    return RunPaths.of(run_dir).manifest


def to_json(state: RunState) -> str:
    """``state`` as the manifest's JSON text (with its format tag), newline-terminated."""
    data = {"format": RUN_FORMAT, **asdict(state)}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _build(cls, data: dict, where: str):
    """A dataclass from a dict, refusing unknown keys (a newer or foreign run.json)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; written by a newer embedkit?")
    return cls(**data)


def from_json(text: str, path: Path) -> RunState:
    """The ``RunState`` of manifest text from ``path``, older formats upgraded; others: ``ConfigError``."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    fmt = data.pop("format", None)
    if fmt in OLD_FORMATS:
        return _from_v1(data)
    if fmt == V2_FORMAT:
        data = _from_v2(data)
    elif fmt != RUN_FORMAT:
        raise ConfigError(
            f"{path} is not an embedkit run manifest (format {fmt!r}, expected {RUN_FORMAT!r}). "
            f"Use another RUN folder for a new run."
        )
    corpus = dict(data.pop("corpus"))
    corpus["options"] = _corpus_options(corpus["options"])
    stat = corpus.get("source_stat")
    corpus["source_stat"] = tuple(stat) if stat else None
    return _build(
        RunState,
        {
            **data,
            "identity": _build(EmbedIdentity, data["identity"], f"{path} identity"),
            "compute": _build(ComputeSettings, data["compute"], f"{path} compute"),
            "corpus": _build(CorpusRecord, corpus, f"{path} corpus"),
            "plan": tuple(_build(ShardSpec, s, f"{path} plan") for s in data["plan"]),
            "jobs": tuple(_job(j, path) for j in data.get("jobs", [])),
            "pinned": _build(ShardIdentity, data["pinned"], f"{path} pinned") if data.get("pinned") else None,
        },
        str(path),
    )


def _from_v2(data: dict) -> dict:
    """A run.json of embedkit-run/2 as /3: the map and export options in ``stage_options``, the revision
    named ``model_revision``."""
    data = dict(data)
    stages = {}
    if (options := data.pop("map_options", None)) is not None:
        stages["map"] = options
    if (fmt := data.pop("export_format", None)) is not None:
        stages["export"] = {"fmt": fmt}
    identity = dict(data["identity"])
    identity["model_revision"] = identity.pop("revision", None)
    return {**data, "identity": identity, "stage_options": stages}


def _corpus_options(data: dict) -> CorpusOptions:
    data = {**data, "text_fields": tuple(data.get("text_fields", ("text",)))}
    names = {f.name for f in dataclasses.fields(CorpusOptions)}
    return CorpusOptions(**{k: v for k, v in data.items() if k in names})


def _job(data: dict, path: Path) -> JobRecord:
    return _build(JobRecord, {**data, "shards": tuple(data.get("shards", ()))}, f"{path} jobs")


def _from_v1(data: dict) -> RunState:
    """A run.json of embedkit-run/1 (one mixed ``embed`` dict, jobs as plain dicts), read as today's records."""
    embed, corpus = data["embed"], data["corpus"]
    identity = EmbedIdentity(
        model_revision=embed.get("revision"),
        **{k: embed.get(k) for k in ("model", "prompt_name", "prompt", "max_seq_length")},
        normalize_embeddings=bool(embed.get("normalize_embeddings")),
    )
    compute = ComputeSettings(
        **{
            k: embed[k]
            for k in ("device", "compute_dtype", "max_tokens_per_batch", "flush_rows", "cache_dir")
            if k in embed
        }
    )
    options = CorpusOptions(
        text_fields=tuple(corpus.get("text_fields", ["text"])),
        skip_bad_rows=bool(corpus.get("skip_bad_rows")),
    )
    plan = tuple(ShardSpec(**s) for s in data["plan"])
    jobs = tuple(
        JobRecord(
            stage=j["stage"],
            backend=j.get("executor", "local"),
            job_id=str(j["job_id"]),
            host=j.get("host", ""),
            profile=j.get("profile", "local"),
            shards=tuple(j.get("shards") or ()),
            submitted_at=j.get("submitted_at", ""),
            array=j.get("executor") == "slurm" and len(j.get("shards") or ()) > 1,
        )
        for j in data.get("jobs", [])
    )
    record = CorpusRecord(
        source=corpus["source"],
        rows=corpus["rows"],
        source_rows=corpus["source_rows"],
        rejected_rows=corpus.get("rejected_rows", 0),
        fingerprint=corpus["fingerprint"],
        options=options,
    )
    return RunState(
        identity=identity,
        model_fingerprint="",
        corpus=record,
        plan=plan,
        requested_shards=len(plan),
        compute=compute,
        created_at=data.get("created_at", ""),
        jobs=jobs,
    )


def load(run_dir: Path) -> RunState | None:
    """The run's state, or None for a folder that is not a run yet.

    Raises:
        ConfigError: run.json exists but cannot be read, naming the file and what to do.
    """
    path = manifest_path(run_dir)
    if not path.exists():
        return None
    try:
        return from_json(path.read_text(encoding="utf-8"), path)
    except ConfigError:
        raise
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            f"{path} is not a readable run manifest ({type(err).__name__}: {err}). "
            "Use another RUN folder for a new run."
        ) from err


def require(run_dir: Path) -> RunState:
    """The run's state; a folder without run.json is refused, naming a run folder beside it with a
    close name (a typo) and the command that starts a run."""
    state = load(run_dir)
    if state is None:
        near = nearest_run_folder(run_dir)
        guess = f" Did you mean RUN={near}?" if near else ""
        raise ConfigError(
            f"RUN={run_dir} is not a run folder (it has no run.json).{guess} A new run starts with: "
            f"{make_command('submit', RUN=run_dir)} CORPUS=<corpus file> MODEL=<model> PROFILE=<site or local>"
        )
    return state


def nearest_run_folder(run_dir: Path) -> Path | None:
    """The run folder beside ``run_dir`` whose name is closest to it (a mistyped RUN=), or None."""
    import difflib

    parent = Path(run_dir).parent
    try:
        runs = [p.name for p in parent.iterdir() if (p / RunPaths.of(p).manifest.name).is_file()]
    except OSError:
        return None
    near = difflib.get_close_matches(Path(run_dir).name, runs, n=1, cutoff=0.6)
    return parent / near[0] if near else None


def save(run_dir: Path, state: RunState) -> None:
    """Write ``state`` as the manifest of ``run_dir``, atomically."""
    atomic.write_text(manifest_path(run_dir), to_json(state))
