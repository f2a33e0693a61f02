"""The stage table: every stage of a run as one record, and which of them a submit sends.

A stage says what its task is, which profile table holds its resources, whether it is an array
(one task per shard), what it still has to do given the run folder's files and the saved run
state, which stages it runs after, and, for an optional stage, its Make variables (a switch such
as ``MAP=1`` and its options such as ``SEED=``), the check run at plan and the line reported once
it succeeded. An optional stage's options are saved in run.json's ``stage_options`` under its
name: nothing else in the kit names it. Adding a stage is one ``Stage`` (``register``) plus its
task module; a site adds its own with ``EMBEDKIT_STAGES=module,...`` (modules that register
stages when imported). Submit and resubmit ask ``stages_to_submit`` over the SAVED state; the
backends run the ``StageRequest``s it returns and never ask which stage one is.

Nothing here imports torch, h5py's users or the map: the tasks import them inside the job.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.runstate import RunState
from jobs.madefrom import drawn_from_output, map_source, merge_is_current
from jobs.settings import StageAsk
from jobs.variables import Variable, choice, path_text, switch, whole
from kit.atomic import tmp_path
from kit.errors import ConfigError, KitError, ShardError
from kit.format import EXPORT_FORMATS, RunPaths, export_target
from kit.shardfile import ShardSpec, done_shards, read_header
from slurm.backend import StageRequest

Todo = tuple[ShardSpec, ...] | bool  # array stages: the shards still to do; other stages: whether to run
PLUGINS_ENV = "EMBEDKIT_STAGES"


@dataclass(frozen=True)
class Stage:
    """One stage of a run, as a record the backends, the CLI and the submit loop read."""

    name: str  # recorded in each JobRecord; names the jobs (<run>-<name>)
    task: Callable[..., Any]  # array: task(specs, run_dir, **options); else task(run_dir, **options)
    todo: Callable[[Path, RunState], Todo]  # what is left, from the files: shards, or whether to run
    resources: str = "merge"  # the profile table with its resources: "embed" (GPUs) or "merge" (CPU)
    array: bool = False  # one task per shard
    after: tuple[str, ...] = ()  # stages whose jobs must succeed first (when submitted in the same call)
    progress: Callable[[Path, ShardSpec], int] | None = None  # array: rows of a shard committed (requeue)
    # A built-in stage's task options, from the run state (the embed stage's identity and compute).
    run_options: Callable[[RunState], dict[str, Any]] | None = None
    # An optional stage: asked for with its switch (a 1/0 or a value that is also a task keyword), saved
    # in run.json's stage_options and kept by later submits until the switch is given as 0.
    switch: Variable | None = None
    variables: tuple[Variable, ...] = ()  # its options: Make variables whose values are task keywords
    check: Callable[[Path, dict[str, Any], str], None] | None = None  # at plan: (run, options, backend)
    report: Callable[[Path, dict[str, Any]], str] | None = None  # the summary line once it succeeded

    def task_options(self, state: RunState) -> dict[str, Any] | None:
        """The keyword arguments of its task; None: the run does not ask for this stage."""
        if self.switch is None:
            return self.run_options(state) if self.run_options else {}
        saved = state.stage_options.get(self.name)
        return None if saved is None else dict(saved)

    @property
    def make_variables(self) -> tuple[Variable, ...]:
        """Its switch and options, as ``make submit`` takes them."""
        return ((self.switch,) if self.switch else ()) + self.variables


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


def load_plugins(environ: dict[str, str] | None = None) -> None:
    """Import the modules named in ``EMBEDKIT_STAGES`` (comma-separated); each registers its stages."""
    for module in filter(None, (m.strip() for m in (environ or os.environ).get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"{PLUGINS_ENV}={module}: cannot import it ({err}).") from err


# ---------------------------------------------------------------- the options of optional stages


def asked_options(stage: Stage, saved: dict[str, Any] | None, ask: StageAsk) -> dict[str, Any] | None:
    """The options ``stage`` keeps after a submit that says ``ask`` of it (None: not run). Pure.

    A switch turns the stage on (its options start from the saved ones, else unset) or off (0);
    options given without the switch change a stage the run already has, and are refused otherwise.
    """
    if stage.switch is None:
        raise ValueError(f"stage {stage.name!r} is not optional: it has no switch")
    given = ", ".join(f"{v.name}=" for v in stage.variables if v.field in ask.options)
    if ask.switch is False:
        if ask.options:
            raise ConfigError(
                f"{stage.switch.name}=0 turns the {stage.name} stage off; {given} would be unused."
            )
        return None
    if ask.switch is None and saved is None:
        if ask.options:
            raise ConfigError(
                f"{given} set options of the {stage.name} stage, which this run does not have: "
                f"add {stage.switch.name}=1 to add it."
            )
        return None
    options = dict(saved) if saved is not None else {v.field: None for v in stage.variables}
    if ask.switch not in (None, True):
        options[stage.switch.field] = ask.switch  # a valued switch is the stage's first option (EXPORT=npy)
    return {**options, **ask.options}


def stage_options_after(
    saved: dict[str, dict[str, Any]], asks: dict[str, StageAsk]
) -> dict[str, dict[str, Any]]:
    """run.json's ``stage_options`` as a submit that says ``asks`` leaves them (refused in a line). Pure."""
    options = dict(saved)
    for name, ask in asks.items():
        kept = asked_options(STAGES[name], options.get(name), ask)
        if kept is None:
            options.pop(name, None)
        else:
            options[name] = kept
    return options


def check_asked(
    run_dir: Path, options: dict[str, dict[str, Any]], asks: Collection[str], backend: str
) -> None:
    """The checks of the optional stages this submit asks for, before anything else is done."""
    for name in asks:
        stage = STAGES[name]
        if name in options and stage.check is not None:
            stage.check(run_dir, options[name], backend)


# ---------------------------------------------------------------- which stages a submit sends


def stages_to_submit(run_dir: Path, state: RunState, redo: Collection[int] = ()) -> list[StageRequest]:
    """The stages the run still needs, in table order: those with work left, and every stage after one
    that is submitted (its inputs change). Pure over the files and ``state``; ``redo``: shards an array
    stage redoes although their files are complete (``make plan REDO=``, which moves no file)."""
    chosen: dict[str, StageRequest] = {}
    for stage in STAGES.values():
        options = stage.task_options(state)
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
            stage.name, run_dir, stage.task, stage.resources, stage.array, shards, options, stage.progress
        )
    return list(chosen.values())


def runs_after(request: StageRequest) -> tuple[str, ...]:
    """The stages ``request`` waits for (when they are submitted in the same call)."""
    return STAGES[request.stage].after


def check_stage(request: StageRequest, backend: str) -> None:
    """The stage's own check at plan (a questions file, the device of a local run); raises ``KitError``."""
    stage = STAGES.get(request.stage)
    if stage is not None and stage.check is not None:
        stage.check(request.run_dir, dict(request.options), backend)


def report_lines(run_dir: Path, state: RunState, submitted: Collection[str]) -> list[str]:
    """The summary lines of the submitted stages that report one, in table order."""
    return [
        stage.report(run_dir, stage.task_options(state) or {})
        for stage in STAGES.values()
        if stage.name in submitted and stage.report is not None
    ]


# ---------------------------------------------------------------- the kit's own stages


def embed_task(specs: list[ShardSpec], run_dir: Path, **options: Any):
    """Embed ``specs`` in turn into shard files (the model is loaded once)."""
    from embedder.run import embed_shards  # torch: only inside the job, never for make status

    return embed_shards(specs, run_dir, **options)


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
    """embeddings.h5 is missing, or does not hold the shards as they are now (a shard was redone)."""
    paths = RunPaths.of(run_dir)
    return not merge_is_current(paths.root, paths.output, paths.shard)


def map_missing(run_dir: Path, state: RunState) -> bool:
    """map.h5 is missing, or was drawn from another embeddings.h5."""
    paths = RunPaths.of(run_dir)
    return not drawn_from_output(paths.map, map_source(paths.map), paths.output)


def export_missing(run_dir: Path, state: RunState) -> bool:
    """The export of the asked format is missing, or was made from another embeddings.h5."""
    from merge.export import exported_from  # pyarrow: reads the export's own metadata

    fmt = (state.stage_options.get("export") or {}).get("fmt") or "parquet"
    paths = RunPaths.of(run_dir)
    target = export_target(paths.output, fmt)
    return not drawn_from_output(target, exported_from(target), paths.output)


def index_missing(run_dir: Path, state: RunState) -> bool:
    """The search index is missing, or was built from another embeddings.h5."""
    from search.indexfile import index_path, read_record  # reads the index's small JSON record only

    output = RunPaths.of(run_dir).output
    try:
        record = read_record(output) if output.exists() else None
    except ConfigError:  # half an index (its record without it, or the reverse): built again
        return True
    return not drawn_from_output(index_path(output), record.source.get("sha256") if record else None, output)


def index_report(run_dir: Path, options: dict[str, Any]) -> str:
    """The index's line: what it is and its measured recall; a ``KitError`` if the job left none."""
    from search.indexfile import read_record

    paths = RunPaths.of(run_dir)
    record = read_record(paths.output)
    if record is None:
        raise KitError(f"The index job of {run_dir} ended without an index; see its log in {paths.logs}.")
    return f"Index: {record.describe()}"


def index_task(run_dir: Path) -> str:
    """Build, tune and measure the search index beside embeddings.h5 (INDEX=1; make index)."""
    from jobs.searching import index_task as build

    return build(run_dir)


def check_device(run_dir: Path, options: dict[str, Any], backend: str) -> None:
    """A local run computes here: DEVICE=cuda|mps where this machine lacks it is refused now."""
    if backend == "local":
        from embedder.device import require_device  # torch: a local plan that is about to embed

        require_device(options["compute"].device, run_dir)


def check_questions(run_dir: Path, options: dict[str, Any], backend: str) -> None:
    """A bad quiz is refused at plan, not by the map job hours later."""
    questions = options.get("questions")
    if questions:
        if not Path(questions).is_file():
            raise ConfigError(f"Questions file {questions} does not exist.")
        from knowledgemap.questions import load_questions

        load_questions(Path(questions))


def map_report(run_dir: Path, options: dict[str, Any]) -> str:
    """The map's line with its trustworthiness; a ``KitError`` if the map job left no map."""
    import json

    from kit.h5files import open_h5

    paths = RunPaths.of(run_dir)
    if not paths.map.exists():
        raise KitError(f"The map job of {run_dir} ended without map.h5; see its log in {paths.logs}.")
    with open_h5(paths.map) as h5:
        quality = json.loads(h5.attrs["quality"])
    return f"Map: {paths.map_page} (trustworthiness {quality['trustworthiness']:.3f})"


def export_report(run_dir: Path, options: dict[str, Any]) -> str:
    """The export's line; a ``KitError`` if the export job left none."""
    paths = RunPaths.of(run_dir)
    target = export_target(paths.output, options.get("fmt") or "parquet")
    if not target.exists():
        raise KitError(
            f"The export job of {run_dir} ended without {target.name}; see its log in {paths.logs}."
        )
    return f"Export: {target}"


MAP_VARIABLES = (
    Variable("QUESTIONS", path_text, "quiz questions for the map (JSON)", goes="stage"),
    Variable("SEED", whole("SEED", 0), "reproducible, single-threaded UMAP", goes="stage"),
    Variable("PCA_DIMS", whole("PCA_DIMS", 0), "PCA dimensions before UMAP; 0: none", goes="stage"),
)

register(
    Stage(
        "embed",
        embed_task,
        todo=pending_shards,
        resources="embed",
        array=True,
        progress=shard_rows_committed,
        run_options=lambda state: {
            "identity": state.identity,
            "compute": state.compute,
            "pinned": state.pinned,
            "canary": tuple(state.canary["texts"]) if state.canary else (),
        },
        check=check_device,
    )
)
register(Stage("merge", merge_task, todo=merge_outdated, after=("embed",)))
register(
    Stage(
        "map",
        map_task,
        todo=map_missing,
        after=("merge",),
        switch=Variable(
            "MAP", switch("MAP"), "add the knowledge map after the merge (1/0)", goes="stage", bare=True
        ),
        variables=MAP_VARIABLES,
        check=check_questions,
        report=map_report,
    )
)
register(
    Stage(
        "export",
        export_task,
        todo=export_missing,
        after=("merge",),
        switch=Variable(
            "EXPORT",
            choice("EXPORT", EXPORT_FORMATS, off=True),
            "add an export after the merge: parquet or npy (0: none)",
            goes="stage",
            key="fmt",
        ),
        report=export_report,
    )
)
register(
    Stage(
        "index",
        index_task,
        todo=index_missing,
        after=("merge",),
        switch=Variable(
            "INDEX", switch("INDEX"), "add a search index after the merge (1/0)", goes="stage", bare=True
        ),
        report=index_report,
    )
)
