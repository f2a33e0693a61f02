"""The stage table: every stage of a run as one record, and which of them a submit sends.

A stage says what its task is, which profile table holds its resources, whether it is an
array (one task per shard), what it still has to do given the run folder's files and the saved
run state, and which stages it runs after. Submit and resubmit ask ``stages_to_submit`` over the
SAVED state (with the request put over it by the caller); the backends run the ``StageRequest``s
it returns and never ask which stage one is. Adding a stage is one ``Stage`` here (or through
``register``) plus its task module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Collection
from typing import Any, Callable

from embedder.config import ComputeSettings, EmbedIdentity
from jobs.runstate import RunState
from kit.atomic import tmp_path
from kit.errors import ShardError
from kit.format import RunPaths
from kit.shardfile import ShardSpec, done_shards, read_header
from merge.export import npy_folder, parquet_path
from slurm.backend import StageRequest

Todo = tuple[ShardSpec, ...] | bool  # array stages: the shards still to do; other stages: whether to run


@dataclass(frozen=True)
class Stage:
    """One stage of a run, as a record the backends and the submit loop read."""

    name: str  # recorded in each JobRecord; names the jobs (<run>-<name>)
    task: Callable[..., Any]  # array: task(specs, run_dir, **options); else task(run_dir, **options)
    todo: Callable[[Path, RunState], Todo]  # what is left, from the files: shards, or whether to run
    resources: str = "merge"  # the profile table with its resources: "embed" (GPUs) or "merge" (CPU)
    array: bool = False  # one task per shard
    # The task's options; None: the run did not ask for this stage.
    options: Callable[[RunState], dict[str, Any] | None] = lambda state: {}
    after: tuple[str, ...] = ()  # stages whose jobs must succeed first (when submitted in the same call)
    progress: Callable[[Path, ShardSpec], int] | None = None  # array: rows of a shard committed (requeue)
    device: Callable[[RunState], str | None] = lambda state: None  # the device its tasks compute on


# ---------------------------------------------------------------- the tasks (pickled by reference into jobs)


def embed_task(specs: list[ShardSpec], run_dir: Path, identity: EmbedIdentity, compute: ComputeSettings):
    """Embed ``specs`` in turn into shard files (the model is loaded once)."""
    from embedder.run import embed_shards  # torch: only inside the job, never for make status

    return embed_shards(specs, run_dir, identity, compute)


def merge_task(run_dir: Path) -> Any:
    """Verify the shards and write embeddings.h5."""
    from jobs.merging import merge_run_folder  # h5py and the merge: only inside the job

    return merge_run_folder(run_dir)


def map_task(
    run_dir: Path, questions: str | None = None, seed: int | None = None, pca_dims: int | None = None
) -> dict:
    """map.h5, map.html, map.png from embeddings.h5."""
    from jobs.merging import map_from_manifest  # umap and plotting: only inside the job

    return map_from_manifest(run_dir, questions, seed, pca_dims)


def export_task(run_dir: Path, fmt: str) -> str:
    """embeddings.parquet or embeddings-npy-float32/ from the verified embeddings.h5 (EXPORT=)."""
    from merge.export import describe
    from merge.exporter import export_run  # pyarrow: only inside the job

    return describe(export_run(run_dir, fmt))


# ---------------------------------------------------------------- what each stage still has to do


def pending_shards(run_dir: Path, state: RunState) -> tuple[ShardSpec, ...]:
    """Planned shards whose final file does not exist yet."""
    done = done_shards(run_dir)
    return tuple(spec for spec in state.plan if spec.index not in done)


def shard_rows_committed(run_dir: Path, spec: ShardSpec) -> int:
    """Rows of ``spec`` in its files: all once its final file exists, else fewer (the ``.tmp``'s rows_done)."""
    if spec.index in done_shards(run_dir):
        return spec.rows
    tmp = tmp_path(RunPaths.of(run_dir).shard(spec.index))
    try:
        rows = read_header(tmp).rows_done if tmp.exists() else 0
    except ShardError:
        rows = 0
    return min(rows, spec.rows - 1)  # not committed until the final file exists


def merge_outdated(run_dir: Path, state: RunState) -> bool:
    """embeddings.h5 is missing, or older than a shard file (a shard was redone since the merge)."""
    paths = RunPaths.of(run_dir)
    if not paths.output.exists():
        return True
    merged = paths.output.stat().st_mtime_ns
    return any(paths.shard(i).stat().st_mtime_ns > merged for i in done_shards(run_dir))


def map_missing(run_dir: Path, state: RunState) -> bool:
    """map.h5 is missing, or older than embeddings.h5."""
    paths = RunPaths.of(run_dir)
    return not paths.map.exists() or (
        paths.output.exists() and paths.output.stat().st_mtime_ns > paths.map.stat().st_mtime_ns
    )


def export_target(run_dir: Path, fmt: str) -> Path:
    """Where the export stage writes ``fmt`` (float32): embeddings.parquet or embeddings-npy-float32/."""
    return (parquet_path if fmt == "parquet" else npy_folder)(RunPaths.of(run_dir).output, "float32")


def export_missing(run_dir: Path, state: RunState) -> bool:
    """The export of the asked format is missing, or older than embeddings.h5."""
    output, target = RunPaths.of(run_dir).output, export_target(run_dir, state.export_format or "parquet")
    return not target.exists() or (output.exists() and output.stat().st_mtime_ns > target.stat().st_mtime_ns)


STAGES: dict[str, Stage] = {}


def register(stage: Stage) -> Stage:
    """Add ``stage`` to the table (after those it runs after); return it."""
    unknown = [a for a in stage.after if a not in STAGES]
    if unknown:
        raise ValueError(f"stage {stage.name!r} runs after unknown stage(s) {unknown}")
    STAGES[stage.name] = stage
    return stage


def unregister(name: str) -> None:
    """Remove a stage added with ``register`` (tests add toy stages)."""
    STAGES.pop(name, None)


register(
    Stage(
        "embed",
        embed_task,
        resources="embed",
        array=True,
        todo=pending_shards,
        options=lambda state: {"identity": state.identity, "compute": state.compute},
        progress=shard_rows_committed,
        device=lambda state: state.compute.device,
    )
)
register(Stage("merge", merge_task, todo=merge_outdated, after=("embed",)))
register(
    Stage(
        "map",
        map_task,
        todo=map_missing,
        options=lambda state: None if state.map_options is None else dict(state.map_options),
        after=("merge",),
    )
)
register(
    Stage(
        "export",
        export_task,
        todo=export_missing,
        options=lambda state: None if state.export_format is None else {"fmt": state.export_format},
        after=("merge",),
    )
)


def stages_to_submit(run_dir: Path, state: RunState, redo: Collection[int] = ()) -> list[StageRequest]:
    """The stages the run still needs, in table order: those with work left, and every stage after one
    that is submitted (its inputs change). Pure over the files and ``state``; ``redo``: shards an array
    stage redoes although their files are complete (``make plan REDO=``, which moves no file)."""
    chosen: dict[str, StageRequest] = {}
    for stage in STAGES.values():
        options = stage.options(state)
        if options is None:
            continue
        todo = stage.todo(run_dir, state)
        if stage.array and redo:
            left = todo if isinstance(todo, tuple) else ()
            todo = tuple(spec for spec in state.plan if spec in left or spec.index in redo)
        if not todo and not any(a in chosen for a in stage.after):
            continue
        shards = (todo if isinstance(todo, tuple) and todo else tuple(state.plan)) if stage.array else ()
        chosen[stage.name] = StageRequest(
            stage.name,
            run_dir,
            stage.task,
            stage.resources,
            stage.array,
            shards,
            options,
            stage.progress,
            stage.device(state),
        )
    return list(chosen.values())


def runs_after(request: StageRequest) -> tuple[str, ...]:
    """The stages ``request`` waits for (when they are submitted in the same call)."""
    return STAGES[request.stage].after
