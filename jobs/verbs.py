"""What each verb does and prints (python -m jobs VERB; make VERB). Parsing is in jobs/cli.py."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from jobs import demo as demo_lib, runstate
from slurm.observe import RunObserver
from jobs.runstate import RunState
from jobs.settings import StageAsk, SubmitRequest, reuse_path
from jobs.stages import report_lines
from kit.commands import make_command
from kit.errors import ConfigError, KitError
from kit.format import OUTPUT_FILE, RunPaths
from kit.runlock import run_lock
from kit.truncation import Truncation


if TYPE_CHECKING:  # submitting (corpus preparation, the backends): imported by the verbs that submit
    from jobs.submit import SubmitOutcome

STATUS_RETRY_S = 20.0
LOCKED_VERBS = (
    "index",
    "submit",
    "plan",
    "resubmit",
    "merge",
    "map",
    "export",
    "export-float16",
    "export-pkl",
)  # never status


def locked(args: argparse.Namespace):
    """The run's lock (kit/runlock.py) for verbs that change a run folder; status never takes it."""
    if args.verb not in LOCKED_VERBS or not getattr(args, "run", None):
        return contextlib.nullcontext()
    if args.verb not in ("submit", "plan") and not args.run.is_dir():  # the verb says the run does not exist
        return contextlib.nullcontext()
    return run_lock(args.run.resolve(), make_command(args.verb, RUN=args.run))


def say(line: str) -> None:
    """Print ``line`` at once (flushed), so progress shows while a verb still runs."""
    print(line, flush=True)


def merged_lines(run_dir: Path) -> list[str]:
    """Report lines of the merged file of ``run_dir``: rows, path, sha256 and its norm statistics."""
    from jobs.merging import merged_summary

    m = merged_summary(run_dir)
    q = m.quality
    return [
        f"Merged {m.rows} rows x {m.dim} into {m.path} (sha256 {m.sha256[:12]}...; "
        f"{m.rejected_rows} rows rejected)",
        f"Norms: mean {q['mean_norm']:.4f} std {q['std_norm']:.4f} min {q['min_norm']:.4f} "
        f"max {q['max_norm']:.4f}; no NaN/Inf, no zero rows" + unit_norm_note(run_dir, q),
        *hardware_lines(run_dir, q),
        *([m.truncation] if m.truncation else []),
    ]


def hardware_lines(run_dir: Path, quality: dict) -> list[str]:
    """What the shards ran on and how their canary vectors agreed (merge/canary.py), from embeddings.h5."""
    from kit.h5files import open_h5
    from merge.canary import summary_line

    with open_h5(RunPaths.of(run_dir).output) as h5:
        mix = h5.attrs.get("hardware_mix")
    line = summary_line(quality, str(mix) if mix is not None else None)
    return [line] if line else []


def unit_norm_note(run_dir: Path, quality: dict) -> str:
    """Why every norm is 1 although NORMALIZE was not asked: the model normalises its own output."""
    from kit.h5files import open_h5

    if abs(quality["min_norm"] - 1) > 1e-3 or abs(quality["max_norm"] - 1) > 1e-3:
        return ""
    with open_h5(RunPaths.of(run_dir).output) as h5:
        asked = str(h5.attrs.get("provenance_normalize_embeddings", "")).lower() in ("true", "1")
        pooling = str(h5.attrs.get("provenance_pooling", ""))
    if asked or "Normalize" not in pooling:
        return ""
    return (
        " (all 1: NORMALIZE is off, but the model's last module, Normalize, scales every vector to length 1)"
    )


def finish(outcome: SubmitOutcome, state: RunState, request: SubmitRequest) -> str:
    """After submitting: wait (WAIT=1) and summarise, or say how to watch."""
    from jobs.wait import interrupted_message, wait_for_run

    run_dir = outcome.run_dir
    if outcome.message:
        return outcome.message
    if not request.wait:
        return f"Watch it with: {make_command('status', RUN=run_dir)}"
    observer = RunObserver(run_dir)
    say("Waiting for the run (a progress line every so often; Ctrl-C stops waiting)...")
    try:
        wait_for_run(run_dir, state, observer, outcome.jobs, say)  # the stages after run in parallel
    except KeyboardInterrupt:
        raise KitError(interrupted_message(run_dir, state, observer)) from None
    from jobs.stages import merge_outdated

    if merge_outdated(run_dir, state):  # no embeddings.h5, or only one of shards since redone (REDO=)
        from jobs.status import status_report

        raise KitError(
            f"The run ended without {RunPaths.of(run_dir).output} of its current shards.\n"
            f"{status_report(run_dir, runstate.require(run_dir), observer.snapshot(state.jobs))}"
        )
    submitted = {j.stage for j in outcome.jobs}
    return "\n".join(
        merged_lines(run_dir) + report_lines(run_dir, state, submitted) + next_lines(run_dir, state)
    )


def next_lines(run_dir: Path, state: RunState) -> list[str]:
    """What to do with the merged file: open it, and draw it where the run has no map."""
    lines = [f"Open it: h5py.File('{RunPaths.of(run_dir).output}') (docs/FORMAT.md)"]
    if "map" not in state.stage_options:
        lines.append(f"Draw it: {make_command('map', RUN=run_dir)}")
    return lines


def _submit(request: SubmitRequest, records=None, dry_run: bool = False) -> str:
    from jobs.submit import submit

    say(f"Run {request.run_dir}: preparing (corpus, model, plan)...")
    try:
        outcome, _, state = submit(request, records, say=say, dry_run=dry_run)
    except KitError as err:  # (a refused first plan leaves no empty folder: kit.runlock.run_lock)
        if dry_run and "your make submit command" in str(err):  # the hints speak of the command just run
            raise type(err)(str(err).replace("your make submit command", "your make plan command")) from None
        raise
    if dry_run:
        return plan_text(outcome, state)
    if not outcome.message:
        say(
            f"Submitted {len(outcome.pending)} shard(s) ({len(outcome.skipped)} already complete); "
            f"logs in {RunPaths.of(request.run_dir).logs}"
        )
    return finish(outcome, state, request)


def plan_text(outcome: SubmitOutcome, state: RunState) -> str:
    """What ``make plan`` prints: the corpus, model and shards a submit would queue, and what it reuses."""
    from embedder.reuse import plan_costs, summary_line

    paths = RunPaths.of(outcome.run_dir)
    counted = Truncation.from_json(state.truncation)
    limit = state.pinned.max_seq_length if state.pinned else state.identity.max_seq_length
    costs = plan_costs(outcome.run_dir, limit) * (
        counted.calibration if counted else 1.0
    )  # what the model sees
    pending = [s for s in state.plan if s.index in set(outcome.pending)]
    lines = [
        f"Plan for {outcome.run_dir} (nothing was queued; wrote {paths.corpus} and {paths.manifest}):",
        f"  corpus: {state.corpus.source}, {state.corpus.rows} rows ({state.corpus.rejected_rows} rejected)",
        f"  model: {model_line(state)}",
        f"  shards: {len(state.plan)} planned, {len(pending)} to embed",
    ]
    lines += [f"  {truncation_line(state)}"] if counted else []
    lines += [f"  {reused}"] if (reused := summary_line(outcome.run_dir)) else []
    if state.requested_shards > len(state.plan):
        lines.append(
            f"  SHARDS={state.requested_shards} on {state.corpus.rows} rows: {len(state.plan)} shards of "
            f"one row each (a shard holds at least one row)"
        )
    for spec in pending[:10]:
        lines.append(
            f"    {spec.describe()}: {spec.rows} rows, about {costs[spec.start : spec.stop].sum():,.0f} tokens"
        )
    if len(pending) > 10:
        lines.append(f"    ... and {len(pending) - 10} more")
    lines += [f"  {line}" for line in outcome.plan_lines]
    lines.append(outcome.message or f"Submit it with: {make_command('submit', RUN=outcome.run_dir)}")
    return "\n".join(lines)


def truncation_line(state: RunState, long_rows: int | None = None) -> str:
    """The plan's count of rows longer than the model's limit, as one line ("" where not counted)."""
    counted = Truncation.from_json(state.truncation)
    passages = bool(getattr(state.identity, "passages", False))
    return counted.line(passages=passages, long_rows=long_rows) if counted else ""


def model_line(state: RunState) -> str:
    """``all-MiniLM-L6-v2 (folder /…/model)`` or ``org/name @ <commit>``: what make plan says of the model."""
    identity = state.identity
    name = state.model_name or identity.model
    where = f" (folder {identity.model})" if name != identity.model else ""
    return f"{name}{where} @ {identity.model_revision or 'local'}"


def submit_or_plan(request: SubmitRequest, dry_run: bool) -> str:
    """make submit (``dry_run`` False) or make plan of a request the CLI built."""
    return _submit(request, dry_run=dry_run)


def cmd_resubmit(args: argparse.Namespace) -> str:
    """``resubmit``: submit the missing or failed shards of an existing run, and a new merge."""
    run_dir = args.run.resolve()
    runstate.require(run_dir)
    return _submit(
        SubmitRequest(
            run_dir=run_dir,
            profile=args.profile,
            redo=args.redo or (),
            wait=bool(args.wait),
            reuse=reuse_path(getattr(args, "reuse", None)),
        )
    )


def cmd_status(args: argparse.Namespace) -> str:
    """``status``: the report of a run's shards and jobs as the scheduler sees them now."""
    from jobs.status import status_report

    run_dir = args.run.resolve()
    state = runstate.require(run_dir)
    return status_report(run_dir, state, RunObserver(run_dir).snapshot(state.jobs, status_retry_s()))


def status_retry_s() -> float:
    """make status answers soon: it retries an unanswering controller briefly, then reports from the files."""
    from slurm.slurmcli import retry_seconds

    return min(retry_seconds(), STATUS_RETRY_S)


def cmd_merge(args: argparse.Namespace) -> str:
    """``merge``: merge the run's shards here, refused while any of its jobs is queued or running."""
    from jobs.merging import merge_run_folder

    from jobs.submit import alive_jobs, busy_refusal

    run_dir = args.run.resolve()
    state = runstate.require(run_dir)
    alive = alive_jobs(state, RunObserver(run_dir))
    if alive:
        raise busy_refusal(
            run_dir, alive, "its merge job runs after them, and a merge now would find unfinished shards"
        )
    merge_run_folder(run_dir)
    return "\n".join(merged_lines(run_dir))


def cmd_stage_model(args: argparse.Namespace) -> str:
    """``stage-model``: download a model (and with ``--attention flash`` its kernel) into the cache."""
    from jobs.stagemodel import stage_model

    if not args.model:
        raise ConfigError(
            "Pass MODEL=<hub name> to stage (PROFILE=<site> puts it in that profile's model_cache)."
        )
    lines = [f"Staged {args.model} at {stage_model(args.model, args.profile, args.revision)}"]
    if args.attention == "flash":
        from embedder.kernels import stage_flash_kernel
        from jobs.stagemodel import profile_cache

        lines.append(f"Staged the flash-attention kernel: {stage_flash_kernel(profile_cache(args.profile))}")
    return "\n".join(lines)


def cmd_fetch(args: argparse.Namespace) -> str:
    """``fetch``: copy a run's merged file from a remote host over ssh and verify its sha256."""
    from jobs.fetch import fetch, parse_remote

    if not args.remote:
        raise ConfigError(
            "Pass REMOTE=host:/path/to/run (an ssh host or alias from ~/.ssh/config) or a run folder's "
            "path on this machine: make fetch REMOTE=mycluster:/scratch/me/runs/wiki"
        )
    dest = Path(args.dest) if args.dest else Path("runs") / parse_remote(args.remote).run_dir.name
    copy = args.copy or ("float16" if args.float16 else None)  # FLOAT16=1: COPY=float16
    r = fetch(args.remote, dest, Path(args.ssh_config) if args.ssh_config else None, copy)
    line = f"Fetched {r.path} ({r.file_bytes:,} bytes, {r.bytes_received:,} received), sha256 {r.sha256} verified"
    return "\n".join([line, *([r.index] if r.index else [])])


def merged_file(run_dir: Path) -> Path:
    """The run's verified embeddings.h5, or a one-line refusal saying where the run stands."""
    output = RunPaths.of(run_dir.resolve()).output
    if not output.is_file():
        runstate.require(run_dir.resolve())
        raise ConfigError(
            f"Run {run_dir.resolve()} has no {OUTPUT_FILE} yet (the merge writes it once every shard "
            f"is done). See where it stands: {make_command('status', RUN=run_dir.resolve())}"
        )
    return output


def cmd_export_float16(args: argparse.Namespace) -> str:
    """``export-float16``: write a float16 copy of the run's merged file."""
    from merge.float16 import write_float16_copy

    merged_file(args.run)
    return f"Wrote {write_float16_copy(args.run)}"


def cmd_export_pkl(args: argparse.Namespace) -> str:
    """``export-pkl``: write the run's merged file as ``wikipedia_merged.pkl`` in the run folder."""
    from merge.export_pkl import export_pkl

    return f"Wrote {export_pkl(merged_file(args.run), RunPaths.of(args.run).pkl)}"


def cmd_export(args: argparse.Namespace) -> str:
    """``export``: write the run's embeddings in ``--format`` (parquet by default) and describe the file."""
    from merge.export import describe
    from merge.exporter import export_run

    return describe(export_run(args.run, args.format or "parquet", bool(args.float16), bool(args.text)))


def cmd_search(args: argparse.Namespace) -> str:
    """``search``: the top K rows of each question, from a run folder or a fetched one."""
    import logging

    from jobs.searching import search_run

    logging.getLogger().setLevel(logging.WARNING)  # the answers, not the model's loading steps
    model = str(demo_lib.demo_model_path()) if args.model == "demo" else args.model
    queries = Path(args.queries) if args.queries else None
    return search_run(args.run.resolve(), args.query, queries, args.k or 10, model)


def cmd_index(args: argparse.Namespace) -> str:
    """``index``: build the search index of the run's verified embeddings.h5 here."""
    from jobs.searching import index_task

    merged_file(args.run)
    return index_task(args.run.resolve())


def cmd_map(args: argparse.Namespace) -> str:
    """``map``: draw the knowledge map of a run here and report its quality."""
    from jobs.merging import map_from_manifest
    from knowledgemap.run import PAGE_FILE, PNG_FILE

    quality = map_from_manifest(args.run, args.questions, args.seed, args.pca_dims, args.model)
    lines = [
        f"Map of {args.run}: open {args.run / PAGE_FILE} (picture: {args.run / PNG_FILE})",
        f"Trustworthiness {quality['trustworthiness']:.3f} on {quality['sample']} points (k={quality['k']})",
    ]
    if "topic_agreement_map" in quality:
        lines.append(
            f"Topic agreement of {quality['k']} nearest neighbours: map {quality['topic_agreement_map']:.3f}"
            f" vs embedding {quality['topic_agreement_embedding']:.3f} "
            f"({quality['topic_agreement_ratio']:.0%} kept)"
        )
    return "\n".join(lines + question_lines(RunPaths.of(args.run)))


def question_lines(paths: RunPaths) -> list[str]:
    """One line per quiz question of the map just drawn: its region on the map and its nearest row."""
    from kit.h5files import open_h5
    from knowledgemap.mapfile import read_questions

    questions = read_questions(paths.map)
    if not questions:
        return []
    lines = [f"Questions on the map ({len(questions)}):"]
    with open_h5(paths.output) as out:
        titles, ids = out["titles"].asstr(), out["ids"].asstr()
        for i, q in enumerate(questions, 1):
            title = (titles[q.nearest_row] or ids[q.nearest_row]) if q.nearest_row is not None else ""
            near = f"; nearest article: {title}" if title else ""
            lines.append(f"  Q{i} {q.text!r} -> region: {q.region}{near}")
    return lines


def demo_run_dir(rows: str) -> Path:
    """runs/demo for the default 2,000 rows; runs/demo-<rows> (runs/demo-all) beside it for others."""
    return Path("runs/demo") if rows == "2000" else Path(f"runs/demo-{rows}")


def cmd_sample(args: argparse.Namespace) -> str:
    """A corpus to try the kit on, made from the Vital Articles package (its text is not kept in the repo)."""

    from kit import atomic

    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in demo_lib.vital_articles(args.rows)]
    atomic.write_text(args.out, "".join(lines))
    return f"Wrote {len(lines)} Wikipedia leads (id, title, url, text, topic) to {args.out}"


def cmd_demo(args: argparse.Namespace) -> str:
    """``demo``: embed vital Wikipedia articles with the packaged model on this machine, and wait."""
    given = args.demo_rows or "2000"
    if given != "all" and not given.isdigit():
        raise ConfigError(f"DEMO_ROWS={given!r}: give a number of articles or 'all'.")
    rows = None if given == "all" else int(given)
    run_dir = (args.run or demo_run_dir(given)).resolve()
    model = demo_lib.demo_model_path()
    request = SubmitRequest(
        run_dir=run_dir,
        shards=args.shards or 2,
        profile="local",
        identity={"model": str(model)},
        corpus_options={"skip_bad_rows": True},
        wait=True,
        stages={"map": StageAsk(True)} if args.map else {},
    )
    return _submit(request, records=demo_lib.vital_articles(rows))
