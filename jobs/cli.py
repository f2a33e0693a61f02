"""python -m jobs submit|resubmit|plan|status|merge|...: the verbs are the Make targets.

``make VERB`` runs ``python -m jobs --make VERB``: each variable of the verb is read from the
environment Make gives its recipe (an empty value means "not given"), and a command-line variable
that no verb knows is refused with the nearest known name (jobs/variables.py). Only what the user
set reaches the run (jobs/settings.py). Errors the kit raises on purpose print as one short
message without a traceback. Importing this module loads no model stack (torch, transformers,
umap): the verbs that need one import it themselves.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

from jobs import stages as stage_table
from jobs.settings import StageAsk, SubmitRequest, cosine, parse_redo, reuse_path
from jobs.variables import (
    MAKEFILE_OWN,
    Variable,
    choice,
    command_line_names,
    names,
    path_text,
    refuse_unknown,
    switch,
    text,
    whole,
)
from kit.commands import make_command
from kit.errors import ConfigError, KitError
from kit.format import FETCH_COPIES

DEMO_MODEL = "demo"  # MODEL=demo: the all-MiniLM-L6-v2 folder shipped with the kit (works offline)
MAKE_FLAG = "--make"  # python -m jobs --make VERB: the verb's variables come from Make's environment


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line naming the Make variable, not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print ``message`` on one line, naming the Make variable instead of argparse's ``argument --x:``; exit 2."""
        detail = message
        if message.startswith("argument ") and ": " in message:
            flag, detail = message[len("argument ") :].split(": ", 1)
            variable = flag.split("/")[0].lstrip("-").replace("-", "_").upper()
            named = variable in detail or not flag.startswith("-")  # a positional (the verb) needs no name
            detail = detail if named else f"{variable}: {detail}"
        print(f"error: {detail}", file=sys.stderr)
        sys.exit(2)


def _checked(parse: Callable[[str], Any], value: str) -> Any:
    """``parse(value)``, its ConfigError as argparse's (one line naming the variable)."""
    try:
        return parse(value)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _redo(value: str):
    try:
        return parse_redo(value)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# ---------------------------------------------------------------- every variable, once

VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in (
        Variable("RUN", path_text, "run folder; default runs/<corpus name>"),
        Variable("CORPUS", text, "corpus file, folder or glob"),
        Variable("SHARDS", whole("SHARDS"), "number of contiguous shards (array tasks)"),
        Variable("PROFILE", text, "slurm/profiles/<name>.toml, a .toml path, or local"),
        Variable(
            "MODEL", text, "hub name or local folder (demo: the model shipped with the kit)", "identity"
        ),
        Variable("REVISION", text, "hub revision (pinned to its commit)", "identity", "model_revision"),
        Variable("PROMPT_NAME", text, "a prompt the model defines", "identity"),
        Variable("PROMPT", text, "a literal prompt", "identity"),
        Variable(
            "NORMALIZE", switch("NORMALIZE"), "L2-normalise (1/0)", "identity", "normalize_embeddings", True
        ),
        Variable("MAX_SEQ_LENGTH", whole("MAX_SEQ_LENGTH"), "truncate rows to this many tokens", "identity"),
        Variable(
            "PASSAGES",
            switch("PASSAGES"),
            "embed whole documents: windows of MAX_SEQ_LENGTH tokens, one vector each and one per document (1/0)",
            "identity",
            bare=True,
        ),
        Variable(
            "OVERLAP", whole("OVERLAP", 0), "PASSAGES=1: tokens shared by consecutive windows", "identity"
        ),
        Variable("DEVICE", text, "auto|cuda|mps|cpu", "compute"),
        Variable("COMPUTE_DTYPE", text, "float32|bfloat16|float16", "compute"),
        Variable("ATTENTION", text, "attention implementation: sdpa|eager|flash", "compute"),
        Variable("PIN_MEMORY", switch("PIN_MEMORY"), "CUDA: page-locked buffers (1/0)", "compute", bare=True),
        Variable("MAX_TOKENS_PER_BATCH", whole("MAX_TOKENS_PER_BATCH"), "token budget", "compute"),
        Variable("FLUSH_ROWS", whole("FLUSH_ROWS"), "rows between two flushes", "compute"),
        Variable("CACHE_DIR", path_text, "hub cache folder", "compute"),
        Variable("TEXT_FIELDS", names, "fields joined into the text, e.g. title,text", "corpus"),
        Variable("ID_FIELD", text, "the id field, or @row to number rows", "corpus"),
        Variable("TITLE_FIELD", text, "the title field", "corpus"),
        Variable("URL_FIELD", text, "the url field", "corpus"),
        Variable("TOPIC_FIELD", text, "the topic field (colours and names the map)", "corpus"),
        Variable("CSV_DELIMITER", text, "CSV separator: , ; | or tab (default: the header tells)", "corpus"),
        Variable(
            "SKIP_BAD_ROWS",
            switch("SKIP_BAD_ROWS"),
            "embed the good rows, list the others",
            "corpus",
            bare=True,
        ),
        Variable("WAIT", switch("WAIT"), "follow the run until it ends (1/0)", bare=True),
        Variable("REDO", _redo, "recompute shards: '3 5', '0-9' or all"),
        Variable("REUSE", text, "an earlier run folder or embeddings.h5: unchanged rows take its vectors"),
        Variable(
            "CANARY_MIN_COSINE",
            lambda value: _checked(cosine, value),
            "the merge refuses shards whose canary vectors fall below this cosine (0.999)",
        ),
        Variable("FORMAT", text, "parquet (default) or npy"),
        Variable(
            "TEXT", switch("TEXT"), "PASSAGES=1 runs: add each passage's text to the passages table (1/0)"
        ),
        Variable("FLOAT16", switch("FLOAT16"), "float16 vectors (1/0)", bare=True),
        Variable(
            "COPY",
            choice("COPY", tuple(FETCH_COPIES)),
            "fetch a smaller copy instead of embeddings.h5: float16, int8 or binary",
        ),
        Variable("REMOTE", text, "where the run is: host:/path/to/run"),
        Variable("DEST", text, "local folder; default runs/<remote run name>"),
        Variable("SSH_CONFIG", path_text, "an ssh config file instead of ~/.ssh/config"),
        Variable("DEMO_ROWS", text, "articles to embed, or 'all' (10,033)"),
        Variable("QUERY", text, "a question to search the run's rows for"),
        Variable("QUERIES", path_text, "a file of questions, one a line (or a map's questions JSON)"),
        Variable("K", whole("K"), "how many rows to find for each question (default 10)"),
    )
}
SUBMIT = [
    "RUN",
    "CORPUS",
    "SHARDS",
    "PROFILE",
    "MODEL",
    "REVISION",
    "PROMPT_NAME",
    "PROMPT",
    "NORMALIZE",
    "MAX_SEQ_LENGTH",
    "PASSAGES",
    "OVERLAP",
    "DEVICE",
    "COMPUTE_DTYPE",
    "ATTENTION",
    "PIN_MEMORY",
    "MAX_TOKENS_PER_BATCH",
    "FLUSH_ROWS",
    "CACHE_DIR",
    "TEXT_FIELDS",
    "ID_FIELD",
    "TITLE_FIELD",
    "URL_FIELD",
    "TOPIC_FIELD",
    "CSV_DELIMITER",
    "SKIP_BAD_ROWS",
    "WAIT",
    "REDO",
    "REUSE",
    "CANARY_MIN_COSINE",
]


def _map_variables() -> list[Variable]:
    return [*stage_table.STAGES["map"].variables, VARIABLES["MODEL"]]


def _map_switch() -> list[Variable]:
    switch = stage_table.STAGES["map"].switch
    return [switch] if switch else []


def _stage_switches_and_options() -> list[Variable]:
    return [v for stage in stage_table.STAGES.values() for v in stage.make_variables]


@dataclass(frozen=True)
class Verb:
    """A ``python -m jobs`` verb (a Make target): what it does, and its Make variables."""

    help: str
    variables: Callable[[], list[Variable]]  # called once the stage table is complete (plugins loaded)
    run_required: bool = True


def _names(*wanted: str) -> Callable[[], list[Variable]]:
    return lambda: [VARIABLES[n] for n in wanted]


VERBS: dict[str, Verb] = {
    "submit": Verb(
        "prepare, plan and submit a run (or what it still lacks)",
        lambda: [*_names(*SUBMIT)(), *_stage_switches_and_options()],
    ),
    "plan": Verb(
        "prepare and check everything, print what submit would submit, queue nothing",
        lambda: [*_names(*SUBMIT)(), *_stage_switches_and_options()],
    ),
    "resubmit": Verb(
        "submit only missing or failed shards of a run, and a new merge",
        _names("RUN", "PROFILE", "WAIT", "REDO", "REUSE"),
    ),
    "stage-model": Verb(
        "download a model into the offline cache (login node, with network)",
        _names("MODEL", "PROFILE", "REVISION", "ATTENTION"),
        run_required=False,
    ),
    "status": Verb("shards done / running / pending / failed, ETA, and the next step", _names("RUN")),
    "merge": Verb("verify the shards and write embeddings.h5 now", _names("RUN")),
    "export-float16": Verb("write embeddings.float16.h5 (half the bytes) for transfer", _names("RUN")),
    "export-pkl": Verb("write the seeds' wikipedia_merged.pkl from embeddings.h5", _names("RUN")),
    "export": Verb(
        "write embeddings.h5 as parquet or npy for DuckDB, LanceDB, FAISS, datasets",
        _names("RUN", "FORMAT", "FLOAT16", "TEXT"),
    ),
    "fetch": Verb(
        "bring the verified embeddings.h5 of a cluster run to this machine",
        _names("REMOTE", "DEST", "SSH_CONFIG", "COPY", "FLOAT16"),
        run_required=False,
    ),
    "map": Verb(
        "UMAP knowledge map of a merged run: map.h5, map.html, map.png",
        lambda: [VARIABLES["RUN"], *_map_variables()],
    ),
    "search": Verb(
        "the rows nearest to a question (QUERY=) or to each of a file of them (QUERIES=)",
        _names("RUN", "QUERY", "QUERIES", "K", "MODEL"),
    ),
    "index": Verb("build the search index of a merged run beside its embeddings.h5", _names("RUN")),
    "sample": Verb("write a small JSONL corpus of Vital Articles leads to try the kit on", lambda: [], False),
    "demo": Verb(
        "embed Wikipedia Vital Articles end to end",
        lambda: [VARIABLES["RUN"], VARIABLES["DEMO_ROWS"], VARIABLES["SHARDS"], *_map_switch()],
        run_required=False,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m jobs`` parser: one subcommand per verb, one option per Make variable it takes."""
    parser = Parser(prog="python -m jobs", description=__doc__)
    parser.add_argument(
        MAKE_FLAG, action="store_true", help="read the verb's Make variables from the environment"
    )
    subparsers = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
    for name, verb in VERBS.items():
        p = subparsers.add_parser(name, help=verb.help)
        for variable in verb.variables():
            variable.add_to(p)
    sample = subparsers.choices["sample"]
    sample.add_argument(
        "--out", type=Path, default=Path("examples/wiki-sample.jsonl"), help="where to write it"
    )
    sample.add_argument("--rows", type=whole("ROWS"), default=40, help="articles, spread over the topics")
    return parser


# ---------------------------------------------------------------- Make's variables


def known_variables() -> set[str]:
    """Every Make variable some verb takes, with the optional stages' and the Makefile's own."""
    return {v.name for verb in VERBS.values() for v in verb.variables()} | set(MAKEFILE_OWN)


def from_make(argv: list[str], environ: dict[str, str]) -> list[str]:
    """``--make VERB ...`` as plain arguments: each variable of VERB that Make's environment sets.

    A command-line variable no verb knows is refused first (``MAKEFLAGS`` names them).
    """
    rest = [a for a in argv if a != MAKE_FLAG]
    verb = rest[0] if rest else ""
    if verb not in VERBS:
        return rest
    refuse_unknown(command_line_names(environ.get("MAKEFLAGS", "")), known_variables(), verb)
    given = [f"{v.flag}={environ[v.name]}" for v in VERBS[verb].variables() if environ.get(v.name)]
    return [verb, *given, *rest[1:]]


def corpus_run_folder(corpus: str) -> Path:
    """RUN's default: ``runs/<corpus name>`` (data/wiki.parquet, data/wiki/ and 'data/wiki/*.parquet': runs/wiki)."""
    path = Path(corpus.rstrip("/"))
    name = path.parent.name if "*" in path.name else path.stem
    return Path("runs") / (name or "run")


def settle_run(args: argparse.Namespace) -> None:
    """RUN as given, else runs/<corpus name>; a verb that needs a run folder and has none is refused."""
    if not hasattr(args, "run"):
        return
    if args.run is None and getattr(args, "corpus", None):
        args.run = corpus_run_folder(args.corpus)
    if args.run is not None:
        args.run = Path(args.run)
    elif VERBS[args.verb].run_required:
        raise ConfigError(
            "RUN is empty: pass RUN=<run folder>, e.g. RUN=runs/wiki. (make plan and make submit name it "
            "after CORPUS=: CORPUS=data/wiki.parquet gives RUN=runs/wiki; start with CORPUS=<your corpus file>.)"
        )


# ---------------------------------------------------------------- a submit request from the arguments


def _given(args: argparse.Namespace, variable: Variable) -> Any:
    return getattr(args, variable.name.lower(), None)


def stage_asks(args: argparse.Namespace) -> dict[str, StageAsk]:
    """What this submit says of each optional stage: its switch and the options given."""
    asks = {}
    for stage in stage_table.STAGES.values():
        if stage.switch is None:
            continue
        options = {v.field: _given(args, v) for v in stage.variables if _given(args, v) is not None}
        if _given(args, stage.switch) is not None or options:
            asks[stage.name] = StageAsk(_given(args, stage.switch), options)
    return asks


def submit_request(args: argparse.Namespace) -> SubmitRequest:
    """Only the options given become part of the request."""
    groups: dict[str, dict[str, Any]] = {"identity": {}, "compute": {}, "corpus": {}}
    for name in SUBMIT:
        variable = VARIABLES[name]
        if variable.goes in groups and _given(args, variable) is not None:
            groups[variable.goes][variable.field] = _given(args, variable)
    model = groups["identity"].get("model")
    if model == DEMO_MODEL:
        from jobs.demo import demo_model_path

        groups["identity"]["model"] = str(demo_model_path())
    elif model and Path(model).expanduser().is_dir():
        groups["identity"]["model"] = str(Path(model).expanduser().resolve())
    return SubmitRequest(
        run_dir=args.run.resolve(),
        corpus=Path(args.corpus) if getattr(args, "corpus", None) else None,
        shards=getattr(args, "shards", None),
        profile=args.profile,
        identity=groups["identity"],
        compute=groups["compute"],
        corpus_options=groups["corpus"],
        redo=args.redo or (),
        wait=bool(args.wait),
        stages=stage_asks(args),
        reuse=reuse_path(getattr(args, "reuse", None)),
        canary_min_cosine=getattr(args, "canary_min_cosine", None),
    )


def _variable_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def as_make_command(verb: str, args: argparse.Namespace, **override: Any) -> str:
    """The ``make VERB ...`` that repeats this submit or plan, with ``override`` put over it (repairs)."""
    given: dict[str, Any] = {"RUN": args.run}
    for variable in VERBS[args.verb].variables():
        value = _given(args, variable)
        if value is not None and variable.name != "RUN":
            given[variable.name] = _variable_text(value)
    given.update(override)
    return make_command(verb, **given)


def check_run_folder(args: argparse.Namespace) -> None:
    """RUN must be a folder (or not exist yet): a file there, or above it, is refused in a line."""
    run = getattr(args, "run", None)
    if run is None:
        return
    for path in (run, *run.parents):
        if path.exists() and not path.is_dir():
            break
    else:
        return
    what = f"RUN={run} is a file" if path == run else f"RUN={run} is under {path}, which is a file"
    hint = "A run folder is where make submit puts run.json, the shards and embeddings.h5."
    corpus = getattr(args, "corpus", None)
    if path == run and args.verb in ("plan", "submit") and not (corpus and Path(corpus).exists()):
        default = Path("runs") / run.name.split(".")[0]
        hint = (
            f"It looks like the corpus: pass it as CORPUS= and choose a run folder, e.g.\n  "
            f"{as_make_command(args.verb, args, RUN=default, CORPUS=run)}"
        )
    elif args.verb in ("plan", "submit"):
        hint += f" Choose another RUN=, e.g. RUN=runs/{run.name.split('.')[0] or 'myrun'}."
    raise ConfigError(f"{what}, not a run folder. {hint}")


def repair_line(err: KitError, args: argparse.Namespace | None) -> str:
    """The user's own command with the error's repair put over it (``ConfigError.repair``), as a line."""
    repair = getattr(err, "repair", None)
    if not repair or args is None or args.verb not in ("submit", "plan", "resubmit"):
        return ""
    if args.verb == "resubmit":  # resubmit takes no identity: the repair goes through submit
        return f"\nRun: {make_command('submit', RUN=args.run, **repair)}"
    return f"\nRun: {as_make_command(args.verb, args, **repair)}"


def dispatch(args: argparse.Namespace) -> str:
    """Run the verb: submit and plan get the typed request built here; the others read their options."""
    from jobs import verbs

    if args.verb in ("submit", "plan"):
        return verbs.submit_or_plan(submit_request(args), dry_run=args.verb == "plan")
    return getattr(verbs, "cmd_" + args.verb.replace("-", "_"))(args)


def main(argv: list[str] | None = None) -> int:
    """Run the verb of ``argv`` under the run folder's lock; exit status 0, 2 on a kit error, 130 on ^C."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    argv = list(sys.argv[1:] if argv is None else argv)
    args: argparse.Namespace | None = None
    try:
        stage_table.load_plugins()
        if MAKE_FLAG in argv:
            argv = from_make(argv, dict(os.environ))
        args = build_parser().parse_args(argv)
        settle_run(args)
        check_run_folder(args)
        from jobs.verbs import locked

        with locked(args):
            print(dispatch(args))
    except KitError as err:
        print(f"error: {err}{repair_line(err, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130
    return 0
