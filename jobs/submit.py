"""make submit / resubmit / plan: settle the run's state, then submit its stages through one loop.

Everything is validated (profile, partitions, model in cache, corpus, identity, the scripts
with ``sbatch --test-only``) before the first job is queued. Which stages go is decided by the
stage table (jobs/stages.py) from the saved run state with the request put over it; the backend
decides how each becomes jobs.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterable

from embedder import reuse as reuse_lib
from embedder.config import EmbedIdentity
from embedder.identity import model_config, model_max_seq_length, model_name, pin_identity, with_pinned
from embedder.model import check_max_seq_length, resolve_model, weights_fingerprint
from embedder.weightcheck import check_weights
from jobs import corpusrun, runstate
from jobs.canaryset import with_canary
from jobs.plan import plan_shards
from jobs.runstate import JobRecord, RunState
from jobs.settings import (
    SubmitRequest,
    change_refusal,
    compute_settings,
    corpus_options,
    given_identity,
    identity_changes,
)
from jobs.stages import STAGES, check_asked, check_stage, runs_after, stage_options_after, stages_to_submit
from jobs.status import shard_files
from kit.clock import now_iso
from kit.commands import make_command
from kit.errors import ConfigError, RunBusyError
from kit.format import RunPaths, shard_name, sidecar_path
from kit import truncation
from kit.shardfile import ShardIdentity, done_shards, shard_path
from slurm import slurmcli
from slurm.backend import Backend, StageRequest, Watcher
from slurm.cluster import SlurmBackend, stage_resources
from slurm.local import LocalBackend
from slurm.observe import RunObserver
from slurm.profiles import LOCAL, ClusterProfile, available_profiles, load_profile

log = logging.getLogger(__name__)
Say = Callable[[str], None]


@dataclass
class SubmitOutcome:
    run_dir: Path
    pending: list[int]  # shard indices submitted
    skipped: list[int]  # shard indices already complete
    jobs: list[JobRecord] = field(default_factory=list)
    message: str = ""  # set when nothing was submitted
    plan_lines: list[str] = field(default_factory=list)  # make plan: what would be submitted


def profile_name(request: SubmitRequest, run: RunState | None) -> str:
    """PROFILE if given; else the run's last profile; else local where there is no Slurm."""
    if request.profile:
        return request.profile
    latest = run.latest_profile() if run is not None else None
    if latest:
        return latest
    if shutil.which("sbatch") is None:
        return LOCAL
    raise ConfigError(
        f"Slurm is available here: choose PROFILE=<site> from {', '.join(available_profiles())} "
        "(or a .toml path); PROFILE=local runs on this machine instead."
    )


def backend_for(name: str, run_dir: Path) -> tuple[Backend, ClusterProfile | None]:
    """The backend of a profile, and the profile (None for local)."""
    if name == LOCAL:
        return LocalBackend(run_dir), None
    profile = load_profile(name)
    slurmcli.require_slurm()
    known = slurmcli.partitions()
    for table in dict.fromkeys(stage.resources for stage in STAGES.values()):
        res = stage_resources(profile, table)
        if res.partition and res.partition not in known:
            raise ConfigError(
                f"Partition {res.partition!r} ([{table}] in profile {profile.name}) does not exist. "
                f"Choose from: {', '.join(sorted(known))}."
            )
    return SlurmBackend(profile=profile), profile


def alive_jobs(run: RunState, backend: Watcher) -> list[JobRecord]:
    """The run's jobs still queued or running. A stage stuck on a dependency that can never be
    satisfied is cancelled, not counted."""
    snapshot = backend.snapshot(run.jobs)
    stuck = [
        j for j in run.jobs if (s := snapshot.tasks.get(j.job_id)) and "DependencyNeverSatisfied" in s.reason
    ]
    if stuck:
        backend.cancel(stuck)
    alive_ids = {t.split("_")[0] for t, s in snapshot.tasks.items() if s.alive}
    return [j for j in run.jobs if j.job_id in alive_ids and j not in stuck]


def busy_refusal(
    run_dir: Path, alive: list[JobRecord], why: str = "a second submit would race them"
) -> RunBusyError:
    """The error refusing to act on ``run_dir`` while jobs of ``alive`` are queued or running, and ``why``."""
    ids = [j.job_id for j in alive]
    shown = ", ".join(ids[:6]) + (f" and {len(ids) - 6} more" if len(ids) > 6 else "")
    return RunBusyError(
        f"Run {run_dir} still has jobs queued or running ({shown}); {why}. "
        f"Watch it with: {make_command('status', RUN=run_dir)}"
    )


def _move_aside(run_dir: Path, path: Path, stamp: str) -> Path:
    """``shard-00003.h5`` -> ``shards/rejected/shard-00003.<stamp>.h5`` (nothing is deleted)."""
    stem, _, suffixes = path.name.partition(".")
    target = RunPaths.of(run_dir).rejected_shards / f"{stem}.{stamp}.{suffixes}"
    target.parent.mkdir(parents=True, exist_ok=True)
    path.rename(target)
    return target


def set_aside(run_dir: Path, indices: Iterable[int]) -> list[Path]:
    """Move complete shards to shards/rejected/ so they are recomputed (REDO='3 5')."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return [
        _move_aside(run_dir, shard_path(run_dir, i), stamp)
        for i in indices
        if shard_path(run_dir, i).exists()
    ]


def set_aside_all(run_dir: Path) -> list[Path]:
    """REDO=all: every shard file, complete or partial, and the merged file go to shards/rejected/."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    moved = [_move_aside(run_dir, p, stamp) for p in sorted(RunPaths.of(run_dir).shards.glob("shard-*.h5*"))]
    output = RunPaths.of(run_dir).output
    if output.exists():
        moved.append(_move_aside(run_dir, output, stamp))
    sidecar_path(output).unlink(missing_ok=True)
    return moved


def _computed_anything(run_dir: Path, run: RunState) -> int:
    """Shards with a final or partial file: once there are any, the run's identity is fixed."""
    shards = RunPaths.of(run_dir).shards
    return len({p.name.split(".")[0] for p in shards.glob("shard-*.h5*")}) if shards.is_dir() else 0


@dataclass(frozen=True)
class Pinned:
    """What a submit settles about the model, before any job: fixed in run.json."""

    identity: EmbedIdentity  # as asked, with the hub revision pinned to its commit
    fingerprint: str  # sha256 of the weights, hashed here once (tasks trust it)
    max_seq_length: int | None  # the model's token limit, or the one asked
    shard_identity: ShardIdentity  # what every shard must record (run.json's ``pinned``)
    name: str  # what summaries call the model
    folder: Path  # the resolved model folder on this machine


def _pinned_identity(request: SubmitRequest, run: RunState | None, cache: str | None, profile: str) -> Pinned:
    """The model resolved (offline), its files checked, its limit checked, and what every shard must record."""
    identity = given_identity(request, run.identity if run else None)
    resolved = resolve_model(identity, cache, profile if profile != LOCAL else None)
    check_weights(resolved.path, identity.model, profile if profile != LOCAL else None)  # headers and sizes
    if resolved.model_revision != "local":
        identity = replace(identity, model_revision=resolved.model_revision)
    check_max_seq_length(identity.max_seq_length, model_config(resolved.path), identity.model)  # not in a job
    fingerprint = weights_fingerprint(resolved.path)
    max_len = identity.max_seq_length or model_max_seq_length(resolved.path)
    shard = pin_identity(identity, fingerprint, max_len, resolved)
    return Pinned(
        identity, fingerprint, max_len, shard, model_name(identity.model, resolved.path), resolved.path
    )


def _truncation(run_dir: Path, pinned: Pinned, prior: RunState | None, corpus_changed: bool) -> dict | None:
    """run.json's ``truncation``: counted with the model's tokenizer on the corpus (or a sample of it),
    again where the corpus, the model, the prompt or the limit changed."""
    same = (
        prior is not None
        and not corpus_changed
        and prior.truncation is not None
        and prior.pinned == pinned.shard_identity
    )
    if same or pinned.max_seq_length is None:
        return prior.truncation if same and prior is not None else None
    estimate = reuse_lib.plan_costs(run_dir, pinned.max_seq_length)
    counted = truncation.count(
        RunPaths.of(run_dir).corpus,
        pinned.folder,
        pinned.shard_identity.prompt or "",
        pinned.max_seq_length,
        estimate,
    )
    return counted.to_json() if counted else None


def settle(
    request: SubmitRequest,
    records: Iterable[Any] | None,
    say: Say,
    backend: Backend | None = None,
    observer=None,
) -> tuple[RunState, Backend, bool]:
    """The run's state as this submit leaves it (saved only by the caller), its backend, and
    whether everything is to be recomputed (REDO=all on a changed run).

    ``backend`` and ``observer`` replace the profile's backend and the run's observer (tests).
    """
    run_dir = request.run_dir
    run = runstate.load(run_dir)
    name = profile_name(request, run) if backend is None else backend.name
    backend, profile = (backend, None) if backend is not None else backend_for(name, run_dir)
    if run is not None and (alive := alive_jobs(run, observer or RunObserver(run_dir))):
        raise busy_refusal(run_dir, alive)
    compute = compute_settings(request, run.compute if run else None, profile)
    model = _pinned_identity(request, run, compute.cache_dir, name)
    identity, fingerprint, max_len, pinned = (
        model.identity,
        model.fingerprint,
        model.max_seq_length,
        model.shard_identity,
    )
    earlier = reuse_lib.check_request(
        request.reuse,
        with_pinned(identity, pinned),
        fingerprint,
        compute.cache_dir,
        name if name != LOCAL else None,
    )  # REUSE=: refused before any job
    options = corpus_options(request, run.corpus.options if run else None)
    if run is None:
        corpus = corpusrun.first_corpus(run_dir, request.corpus, options, records)
        reused = _record_reuse(run_dir, earlier, say)
        state = _new_state(request, identity, fingerprint, corpus, compute, max_len)
        counted = _truncation(run_dir, model, None, True)
        state = replace(
            state, profile=name, pinned=pinned, reuse=reused, model_name=model.name, truncation=counted
        )
        return state, backend, False
    check = corpusrun.check_corpus(run_dir, run.corpus, request.corpus, options, records)
    changes = {**identity_changes(run.identity, identity), **(check.changes or {})}
    if run.model_fingerprint and fingerprint != run.model_fingerprint:
        changes["model weights"] = (run.model_fingerprint[:12], fingerprint[:12])
    elif run.model_fingerprint and "model" in changes:  # the same weights at another path: the same model
        say(
            f"Model {identity.model}: the same weights as {run.identity.model} (sha256 {fingerprint[:12]}); "
            "run.json records the new place."
        )
        changes.pop("model")
        changes.pop("model_revision", None)
    computed = _computed_anything(run_dir, run)
    if changes and computed and not request.redo_all:
        corpusrun.discard_candidate(run_dir)
        raise change_refusal(run_dir, "settings", changes, computed)
    if check.candidate is not None:
        corpusrun.install_candidate(run_dir, check.candidate)
    reused = _record_reuse(run_dir, earlier, say, drop=request.redo_all or bool(changes))
    corpus_changed = check.record.rows != run.corpus.rows or bool(changes)
    replan = _replan(
        request,
        run,
        computed,
        corpus_changed or (earlier is not None and not computed),
        max_len,
        _overlap(identity, max_len),
    )
    state = replace(
        run,
        identity=identity,
        model_fingerprint=fingerprint,
        corpus=check.record,
        compute=compute,
        profile=name,
        pinned=pinned,
        reuse=reused,
        model_name=model.name,
        truncation=_truncation(run_dir, model, run, corpus_changed),
        **replan,
    )
    if changes:
        say(
            f"Run {run_dir}: recomputing everything with the new settings (REDO=all)."
            if computed
            else f"Run {run_dir}: nothing computed yet, so it takes the new settings."
        )
    return state, backend, request.redo_all


def _record_reuse(
    run_dir: Path, earlier: reuse_lib.Earlier | None, say: Say, drop: bool = False
) -> dict | None:
    """Match the corpus with the REUSE file (if given) and say the counts; run.json's record either way.

    ``drop``: settings or corpus changed, or REDO=all: an earlier match is deleted unless REUSE is given again.
    """
    if earlier is not None:
        record = reuse_lib.record_match(run_dir, earlier)
        say(
            f"REUSE: {record.reused_rows} rows match {earlier.path} by id and content hash; "
            f"{record.computed_rows} rows will be computed."
        )
    return reuse_lib.current_record(run_dir, drop=earlier is None and drop)


def _new_state(
    request: SubmitRequest, identity, fingerprint: str, corpus, compute, max_len: int | None
) -> RunState:
    shards = request.shards or 1
    return RunState(
        identity=identity,
        model_fingerprint=fingerprint,
        corpus=corpus,
        plan=tuple(
            plan_shards(reuse_lib.plan_costs(request.run_dir, max_len, _overlap(identity, max_len)), shards)
        ),
        requested_shards=shards,
        compute=compute,
        created_at=now_iso(),
    )


def _overlap(identity, max_len: int | None) -> int | None:
    """PASSAGES=1: the windows' overlap, so the plan balances shards by passage cost; None otherwise."""
    return identity.passage_overlap(max_len) if max_len else None


def _replan(
    request: SubmitRequest,
    run: RunState,
    computed: int,
    corpus_changed: bool,
    max_len: int | None,
    overlap: int | None = None,
) -> dict:
    """A new plan where SHARDS asks for another one (refused once shards exist, unless REDO=all)."""
    asked = request.shards
    if not corpus_changed and (asked is None or asked in (run.requested_shards, len(run.plan))):
        return {}
    if computed and not request.redo_all and not corpus_changed:
        raise ConfigError(
            f"Run {request.run_dir} was planned with {len(run.plan)} shards ({computed} computed or started); "
            f"SHARDS={asked} would cut its rows differently. To continue as planned: "
            f"{make_command('submit', RUN=request.run_dir)}; to recompute everything with {asked} shards add REDO=all."
        )
    shards = asked or run.requested_shards
    return {
        "plan": tuple(plan_shards(reuse_lib.plan_costs(request.run_dir, max_len, overlap), shards)),
        "requested_shards": shards,
    }


def submit(
    request: SubmitRequest,
    records: Iterable[Any] | None = None,
    say: Say = print,
    dry_run: bool = False,
    backend: Backend | None = None,
    observer=None,
) -> tuple[SubmitOutcome, Backend, RunState]:
    """Submit what the run still needs (or, with ``dry_run``, check it and say what would be submitted)."""
    run_dir = request.run_dir
    saved = runstate.load(run_dir)
    if saved is None and request.corpus is None and records is None:
        runstate.require(run_dir)  # no run here, and no corpus to start one: a mistyped RUN=, named
    options = stage_options_after(
        saved.stage_options if saved else {}, request.stages
    )  # refused now, not later
    check_asked(run_dir, options, request.stages, backend.name if backend else profile_name(request, saved))
    state, backend, redo_all = settle(request, records, say, backend, observer)
    redo_shards: tuple[int, ...] = () if isinstance(request.redo, str) else request.redo
    unknown = sorted(set(redo_shards) - {s.index for s in state.plan})
    if unknown:
        raise ConfigError(
            f"REDO names shards {unknown}, but run {run_dir} has shards 0 to {len(state.plan) - 1}."
        )
    redo = {s.index for s in state.plan} if redo_all else set(redo_shards)
    state = replace(state, stage_options=options, scheduler_version=backend.version())
    state = with_canary(run_dir, state, saved, request.canary_min_cosine)  # chosen once, kept after
    stages = stages_to_submit(run_dir, state, redo=redo)  # as they are once REDO's shards are set aside
    if redo_all and not dry_run:
        set_aside_all(run_dir)
    elif redo_shards and not dry_run:
        set_aside(run_dir, redo_shards)
    shown_redo = redo if dry_run else set()  # make plan moves no file: it shows the shards REDO would redo
    pending = [s.index for stage in stages if stage.array for s in stage.shards]
    outcome = SubmitOutcome(run_dir, pending, sorted(done_shards(run_dir) - shown_redo))
    if not stages:
        if not dry_run:
            runstate.save(run_dir, state)
        outcome.message = f"Nothing to do: every shard is complete and {RunPaths.of(run_dir).output} exists."
        return outcome, backend, state
    runstate.save(run_dir, state)  # the run is planned: make submit RUN=... alone submits exactly this
    for stage in stages:  # where it runs (a local run's device): the repair only changes how it computes
        check_stage(stage, backend.name)
    outcome.plan_lines = [backend.check(stage) for stage in stages]
    if dry_run:
        return outcome, backend, state
    RunPaths.of(run_dir).shards.mkdir(parents=True, exist_ok=True)
    before = len(state.jobs)
    state = _submit_stages(run_dir, state, backend, stages, say)
    outcome.jobs = list(state.jobs[before:])
    return outcome, backend, state


def _submit_stages(
    run_dir: Path, state: RunState, backend: Backend, stages: list[StageRequest], say: Say
) -> RunState:
    """The one loop: each stage after the jobs of the stages it runs after; run.json saved after each."""
    rows_now = sum(f.rows_done for f in shard_files(run_dir, state.plan).values())
    submitted: dict[str, list[JobRecord]] = {}
    for stage in stages:
        after = [j for name in runs_after(stage) for j in submitted.get(name, [])]
        jobs = [replace(j, rows_at_submit=rows_now) for j in backend.submit(stage, after)]
        submitted[stage.stage] = jobs
        state = state.with_jobs(*jobs)
        runstate.save(run_dir, state)  # recorded as soon as they exist: an error later leaves them findable
        say(describe_jobs(stage, jobs))
    return state


def describe_jobs(stage: StageRequest, jobs: list[JobRecord]) -> str:
    """One line of the submit report: the stage, the shards it runs and its job ids."""
    if stage.array:
        n = len(stage.shards)
        first, last = shard_name(stage.shards[0].index), shard_name(stage.shards[-1].index)
        return (
            f"  {stage.stage}: {n} shard(s) ({first}{' ... ' + last if n > 1 else ''}) as job(s) "
            f"{', '.join(j.job_id for j in jobs)}"
        )
    return f"  {stage.stage}: job {', '.join(j.job_id for j in jobs)} (after the stages before it succeed)"
