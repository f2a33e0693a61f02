"""make submit: prepare the corpus once, plan, submit pending shards and the merge."""

from __future__ import annotations

import logging
import shutil
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from embedder import corpus as corpus_lib
from embedder.model import resolve_model
from embedder.run import now_iso
from jobs import localjobs, manifest as manifest_lib, slurmjobs
from jobs.config import RunConfig, reconcile
from jobs.manifest import Manifest
from jobs.plan import pending_shards, plan_shards
from kit.errors import ConfigError, KitError, RunBusyError
from kit.format import CORPUS_FILE, OUTPUT_FILE, REJECTED_SHARDS_DIR, SHARDS_DIR, shard_index, shard_name
from slurm.profiles import LOCAL, available_profiles, load_profile

log = logging.getLogger(__name__)


@dataclass
class SubmitOutcome:
    run_dir: Path
    pending: list[int]  # shard indices submitted
    skipped: list[int]  # shard indices already complete
    job_ids: list[str] = field(default_factory=list)
    merge: dict | None = None  # the merge summary when waited for
    map: dict | None = None  # the map's quality figures when waited for
    message: str = ""


def ensure_corpus(run_dir: Path, source: Path | None, options: corpus_lib.CorpusOptions,
                  records: Iterable[Any] | None = None) -> corpus_lib.CorpusInfo:
    """Prepare ``<run>/corpus.h5`` once (validating every row); later submits reuse it."""
    path = run_dir / CORPUS_FILE
    if path.exists():
        return corpus_lib.corpus_info(path)
    if records is None:
        if source is None:
            raise ConfigError(f"Run {run_dir} has no prepared corpus yet: pass CORPUS=<file.pkl|.jsonl|.json>.")
        records = corpus_lib.iter_records(source)
    summary = corpus_lib.prepare(records, path, options, str(source or "records"))
    log.info("prepared %s: %d rows (%d rejected) from %s", path, summary.rows, len(summary.rejected), summary.source)
    if summary.rejected:
        log.warning(corpus_lib.refusal_message(summary).splitlines()[0] + " They are listed under /rejected.")
    return corpus_lib.corpus_info(path)


def complete_shards(run_dir: Path) -> set[int]:
    return {i for p in (run_dir / SHARDS_DIR).glob("shard-*.h5") if (i := shard_index(p)) is not None}


def set_aside_for_redo(run_dir: Path, indices: Iterable[int]) -> list[Path]:
    """Move complete shards to shards/rejected/ so they are recomputed (nothing is deleted)."""
    moved, stamp = [], time.strftime("%Y%m%dT%H%M%S")
    for index in indices:
        path = run_dir / SHARDS_DIR / shard_name(index)
        if path.exists():
            target = run_dir / REJECTED_SHARDS_DIR / f"{path.stem}.{stamp}.h5"
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
            moved.append(target)
    return moved


def _load_or_create(config: RunConfig, info: corpus_lib.CorpusInfo, manifest: Manifest | None) -> Manifest:
    if manifest is not None:
        return manifest
    corpus = {"source": info.source, "rows": info.rows, "source_rows": info.source_rows,
              "rejected_rows": info.rejected_rows, "fingerprint": info.fingerprint,
              "text_fields": list(config.corpus_options.text_fields),
              "skip_bad_rows": config.corpus_options.skip_bad_rows}
    return Manifest(embed=config.embed, plan=plan_shards(info.rows, config.shards), corpus=corpus,
                    created_at=now_iso())


def _profile_for(config: RunConfig, existing: Manifest | None) -> str:
    """PROFILE if given; else the run's last profile; else local where there is no Slurm."""
    if config.profile:
        return config.profile
    used = [j["profile"] for j in (existing.jobs if existing else []) if j.get("profile")]
    if used:
        return used[-1]
    if shutil.which("sbatch") is None:
        return LOCAL
    raise ConfigError(f"Slurm is available here: choose PROFILE=<site> from {', '.join(available_profiles())} "
                      "(or a .toml path); PROFILE=local runs on this machine instead.")


def live_jobs(manifest: Manifest) -> list[dict]:
    """The run's jobs still alive: local pids of this host, and Slurm jobs in the queue.

    A merge left pending on a dependency that can never be satisfied is cancelled, not counted.
    """
    alive = localjobs.jobs_alive(manifest.jobs)
    slurm_jobs = [j for j in manifest.jobs if j.get("executor") == "slurm"]
    if slurm_jobs and shutil.which("squeue"):
        states = slurmjobs.queue_states([j["job_id"] for j in slurm_jobs])
        stuck = [i for i, st in states.items() if st.state == "PENDING" and "DependencyNeverSatisfied" in st.reason]
        slurmjobs.cancel(stuck)
        queued = {i.split("_")[0] for i, st in states.items() if i not in stuck and st.state in slurmjobs.ALIVE}
        alive += [j for j in slurm_jobs if j["job_id"] in queued]
    return alive


def submit(config: RunConfig, *, wait: bool = False, redo: Iterable[int] = (),
           records: Iterable[Any] | None = None, map_options: dict | None = None) -> SubmitOutcome:
    """Submit what the run still needs. Refuses while the run's jobs are alive.

    Everything is validated (profile, partitions, model in cache, corpus) before any job starts.
    ``map_options`` (questions, seed, pca_dims) adds a third stage: the knowledge map after the merge.
    """
    run_dir = config.run_dir
    existing = manifest_lib.load(run_dir)
    if existing and (alive := live_jobs(existing)):
        raise RunBusyError(f"Run {run_dir} still has jobs in the queue ({', '.join(j['job_id'] for j in alive)}). "
                           f"Watch it with: make status RUN={run_dir}")
    profile_name = _profile_for(config, existing)
    profile = None if profile_name == LOCAL else load_profile(profile_name)
    if profile is not None:
        slurmjobs.require_slurm()
        slurmjobs.check_partitions(profile)
    config = reconcile(config, existing)
    if profile is not None and profile.model_cache and not config.embed.cache_dir:
        config = replace(config, embed=replace(config.embed, cache_dir=profile.model_cache))
    resolve_model(config.embed)  # fail before submitting anything if the model is not staged
    info = ensure_corpus(run_dir, config.corpus, config.corpus_options, records)
    manifest = _load_or_create(config, info, existing)
    if manifest.corpus["fingerprint"] != info.fingerprint:
        raise ConfigError(f"{run_dir / CORPUS_FILE} is not the corpus run.json was planned on. Use a new RUN.")
    unknown = sorted(set(redo) - {s.index for s in manifest.plan})
    if unknown:
        raise ConfigError(f"REDO names shards {unknown}, but run {run_dir} has shards 0 to {len(manifest.plan) - 1}.")
    set_aside_for_redo(run_dir, redo)
    done = complete_shards(run_dir)
    pending = pending_shards(manifest.plan, done)
    outcome = SubmitOutcome(run_dir, [s.index for s in pending], sorted(done))
    output = run_dir / OUTPUT_FILE
    if not pending and output.exists() and not redo:
        manifest_lib.save(run_dir, manifest)
        outcome.message = f"Nothing to do: every shard is complete and {output} exists."
        return outcome
    (run_dir / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    if profile is None:
        _submit_local(run_dir, pending, manifest, config, outcome, wait, map_options)
    else:
        _submit_slurm(run_dir, pending, manifest, profile, outcome, wait, map_options)
    return outcome


def _record(manifest: Manifest, stage: str, executor: str, job_id: str, profile: str, shards: list[int]) -> None:
    manifest.jobs.append({"stage": stage, "executor": executor, "job_id": job_id, "host": socket.gethostname(),
                          "profile": profile, "shards": shards, "submitted_at": now_iso()})


def _submit_local(run_dir: Path, pending: list, manifest: Manifest, config: RunConfig, outcome: SubmitOutcome,
                  wait: bool, map_options: dict | None) -> None:
    embed_jobs = localjobs.submit_embed(run_dir, pending, manifest.embed, config.timeout_min) if pending else []
    merge_job = localjobs.submit_merge(run_dir, embed_jobs, config.timeout_min)
    map_job = localjobs.submit_map(run_dir, merge_job, config.timeout_min, map_options) if map_options else None
    for job in embed_jobs:
        _record(manifest, "embed", "local", str(job.job_id), LOCAL, [])
    _record(manifest, "merge", "local", str(merge_job.job_id), LOCAL, [])
    if map_job:
        _record(manifest, "map", "local", str(map_job.job_id), LOCAL, [])
    manifest_lib.save(run_dir, manifest)
    outcome.job_ids = [str(j.job_id) for j in [*embed_jobs, merge_job, *([map_job] if map_job else [])]]
    if wait:
        outcome.merge = wait_for(embed_jobs, merge_job)
        if map_job:
            outcome.map = wait_for([], map_job, stage="map")


def _submit_slurm(run_dir: Path, pending: list, manifest: Manifest, profile, outcome: SubmitOutcome,
                  wait: bool, map_options: dict | None) -> None:
    arrays = slurmjobs.submit_embed(run_dir, pending, manifest.embed, profile) if pending else []
    for sub in arrays:  # recorded as soon as each exists: an error later still leaves them findable
        _record(manifest, "embed", "slurm", sub.job_id, profile.name, sub.shards)
    manifest_lib.save(run_dir, manifest)
    merge = slurmjobs.submit_merge(run_dir, arrays, profile)
    _record(manifest, "merge", "slurm", merge.job_id, profile.name, [])
    mapped = slurmjobs.submit_map(run_dir, merge, profile, map_options) if map_options else None
    if mapped:
        _record(manifest, "map", "slurm", mapped.job_id, profile.name, [])
    manifest_lib.save(run_dir, manifest)
    outcome.job_ids = [s.job_id for s in [*arrays, merge, *([mapped] if mapped else [])]]
    if wait:
        outcome.merge = wait_for_slurm(run_dir, merge.job_id)
        if mapped:
            _wait_gone(mapped.job_id)
            outcome.map = _map_quality(run_dir)


def _map_quality(run_dir: Path) -> dict:
    import json

    import h5py

    path = run_dir / "map.h5"
    if not path.exists():
        raise KitError(f"The map job of {run_dir} ended without map.h5; see its log in {run_dir / 'logs'}.")
    with h5py.File(path, "r") as h5:
        return json.loads(h5.attrs["quality"])


def _wait_gone(job_id: str, poll_s: float = 5.0) -> None:
    """Block until a Slurm job has left the queue."""
    while slurmjobs.queue_states([job_id]):
        time.sleep(poll_s)


def wait_for_slurm(run_dir: Path, merge_id: str) -> dict:
    """Block until the merge job leaves the queue; success only if the merged file is there."""
    from jobs.merging import merged_summary
    from jobs.status import status_report

    _wait_gone(merge_id)
    output = run_dir / OUTPUT_FILE
    if not output.exists():
        raise KitError(f"The run ended without {output}.\n{status_report(run_dir)}")
    return merged_summary(run_dir)


def _failure_text(job) -> str:
    """A failed job's error: from our exception's line (``kit.errors.X: ...``) to the end."""
    lines = [ln for ln in str(job.exception()).strip().splitlines() if ln.strip()]
    starts = [i for i, ln in enumerate(lines) if ln.startswith("kit.errors.")]
    return "\n".join(lines[starts[-1]:] if starts else lines[-15:])


def wait_for(embed_jobs: list, last_job, stage: str = "merge") -> dict:
    """Block until ``last_job`` (the merge, or the map) ends; raise KitError with the failing job's message."""
    failures = []
    for job in embed_jobs:
        job.wait()
        if job.exception() is not None:
            failures.append(f"embed job {job.job_id} failed (log: {job.paths.stderr}):\n{_failure_text(job)}")
    last_job.wait()
    if last_job.exception() is not None:
        failures.append(f"{stage} job {last_job.job_id} (log: {last_job.paths.stderr}):\n{_failure_text(last_job)}")
        raise KitError("\n\n".join(failures))
    if failures:
        log.warning("\n\n".join(failures))
    return last_job.result()
