"""python -m jobs submit|resubmit|plan|status|merge|...: the verbs are the Make targets.

Make passes every variable, set or not; an empty value means "not given", so only what the
user set reaches the run (jobs/settings.py). Errors the kit raises on purpose print as one
short message without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from jobs import verbs
from jobs.demo import demo_model_path
from jobs.settings import COMPUTE_FIELDS, CORPUS_FIELDS, SubmitRequest, parse_redo, reuse_path
from kit.commands import make_command
from kit.errors import ConfigError, KitError
from merge.export import FORMATS as EXPORT_FORMATS

OFF = "off"  # EXPORT=0: the export stage is turned off


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


def _text(value: str) -> str | None:
    return value or None


def _int(variable: str, minimum: int = 1):
    def parse(value: str) -> int | None:
        if not value:
            return None
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{variable}={value!r} is not a whole number.") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{variable}={value} must be at least {minimum}.")
        return number

    return parse


def _flag(variable: str):
    def parse(value: str) -> bool | None:
        if not value:
            return None
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise argparse.ArgumentTypeError(f"{variable}={value!r}: use 1 or 0.")

    return parse


def _fields(value: str) -> tuple[str, ...] | None:
    names = tuple(f.strip() for f in value.split(",") if f.strip())
    return names or None


def _redo(value: str):
    try:
        return parse_redo(value)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# Options: (flag, Make variable, type, help, where it goes)
SUBMIT_OPTIONS: list[tuple[str, str, Any, str, str]] = [
    ("--corpus", "CORPUS", _text, "corpus file, folder or glob", "request"),
    ("--shards", "SHARDS", _int("SHARDS"), "number of contiguous shards (array tasks)", "request"),
    ("--profile", "PROFILE", _text, "slurm/profiles/<name>.toml, a .toml path, or local", "request"),
    ("--model", "MODEL", _text, "hub name or local folder", "identity"),
    ("--revision", "REVISION", _text, "hub revision (pinned to its commit)", "identity"),
    ("--prompt-name", "PROMPT_NAME", _text, "a prompt the model defines", "identity"),
    ("--prompt", "PROMPT", _text, "a literal prompt", "identity"),
    ("--normalize-embeddings", "NORMALIZE", _flag("NORMALIZE"), "L2-normalise (1/0)", "identity"),
    (
        "--max-seq-length",
        "MAX_SEQ_LENGTH",
        _int("MAX_SEQ_LENGTH"),
        "truncate rows to this many tokens",
        "identity",
    ),
    ("--device", "DEVICE", _text, "auto|cuda|mps|cpu", "compute"),
    ("--compute-dtype", "COMPUTE_DTYPE", _text, "float32|bfloat16|float16", "compute"),
    ("--attention", "ATTENTION", _text, "attention implementation: sdpa|eager|flash", "compute"),
    (
        "--pin-memory",
        "PIN_MEMORY",
        _flag("PIN_MEMORY"),
        "CUDA: page-locked buffers, non-blocking copies (1/0)",
        "compute",
    ),
    (
        "--max-tokens-per-batch",
        "MAX_TOKENS_PER_BATCH",
        _int("MAX_TOKENS_PER_BATCH"),
        "token budget",
        "compute",
    ),
    ("--flush-rows", "FLUSH_ROWS", _int("FLUSH_ROWS"), "rows between two flushes", "compute"),
    ("--cache-dir", "CACHE_DIR", _text, "hub cache folder", "compute"),
    ("--text-fields", "TEXT_FIELDS", _fields, "fields joined into the text, e.g. title,text", "corpus"),
    ("--id-field", "ID_FIELD", _text, "the id field, or @row to number rows", "corpus"),
    ("--title-field", "TITLE_FIELD", _text, "the title field", "corpus"),
    ("--url-field", "URL_FIELD", _text, "the url field", "corpus"),
    (
        "--skip-bad-rows",
        "SKIP_BAD_ROWS",
        _flag("SKIP_BAD_ROWS"),
        "embed the good rows, list the others (1/0)",
        "corpus",
    ),
]


DEMO_MODEL = "demo"  # MODEL=demo: the all-MiniLM-L6-v2 folder shipped with the kit (works offline)
FLAGS = ("--normalize-embeddings", "--skip-bad-rows", "--pin-memory")  # also usable bare: --skip-bad-rows


def _switch(p: argparse.ArgumentParser, flag: str, variable: str, help_text: str) -> None:
    """A 1/0 option that Make passes with a value ("" = not given) and a person may pass bare."""
    p.add_argument(
        flag, type=_flag(variable), nargs="?", const=True, default=None, help=f"{help_text} ({variable}=1)"
    )


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _add_submit_options(p: argparse.ArgumentParser) -> None:
    for flag, variable, parse, help_text, _ in SUBMIT_OPTIONS:
        extra: dict[str, Any] = {"nargs": "?", "const": True} if flag in FLAGS else {}
        p.add_argument(flag, type=parse, default=None, help=f"{help_text} ({variable}=)", **extra)
    _add_run_options(p)
    _switch(p, "--map", "MAP", "add the knowledge map as a third stage")
    p.add_argument("--questions", type=_text, help="quiz questions for the map (QUESTIONS=)")
    p.add_argument("--seed", type=_int("SEED", 0), help="reproducible, single-threaded UMAP (SEED=)")
    p.add_argument("--pca-dims", type=_int("PCA_DIMS", 0), help="PCA before UMAP (PCA_DIMS=)")
    p.add_argument(
        "--export", type=_export, help="add an export stage after the merge: parquet or npy (EXPORT=)"
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    _switch(p, "--wait", "WAIT", "follow the run until it ends")
    p.add_argument("--redo", type=_redo, default=(), help="recompute shards: '3 5', '0-9' or all (REDO=)")
    p.add_argument(
        "--reuse",
        type=_text,
        default=None,
        help="an earlier run folder or embeddings.h5: unchanged rows take its vectors (REUSE=)",
    )


def _export(value: str) -> str | None:
    if value in ("0", "off"):
        return OFF
    if value and value not in EXPORT_FORMATS:
        raise argparse.ArgumentTypeError(
            f"EXPORT={value!r}: choose from {', '.join(EXPORT_FORMATS)} (0: none)."
        )
    return value or None


def _run_folder(value: str) -> Path:
    if not value:
        raise argparse.ArgumentTypeError(
            "RUN is empty: pass RUN=<run folder>, e.g. RUN=runs/wiki. (make plan and "
            "make submit name it after CORPUS=: CORPUS=data/wiki.parquet gives "
            "RUN=runs/wiki; start with CORPUS=<your corpus file>.)"
        )
    return Path(value)


def _add_run(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--run",
        type=_run_folder if required else (lambda v: Path(v) if v else None),
        required=required,
        help="run folder (RUN=)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m jobs`` parser: one subcommand per verb, with its options."""
    parser = Parser(prog="python -m jobs", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
    for verb, text in (
        ("submit", "prepare, plan and submit a run (or what it still lacks)"),
        ("plan", "prepare and check everything, print what submit would submit, queue nothing"),
    ):
        p = verbs.add_parser(verb, help=text)
        _add_run(p)
        _add_submit_options(p)
    p = verbs.add_parser("resubmit", help="submit only missing or failed shards of a run, and a new merge")
    _add_run(p)
    p.add_argument("--profile", type=_text, help="default: the profile the run last used (PROFILE=)")
    _add_run_options(p)
    p = verbs.add_parser(
        "stage-model", help="download a model into the offline cache (login node, with network)"
    )
    p.add_argument("--model", type=_text, help="hub name (MODEL=)")
    p.add_argument("--profile", type=_text, help="its model_cache is the target (PROFILE=)")
    p.add_argument("--revision", type=_text, help="(REVISION=)")
    p.add_argument("--attention", type=_text, help="ATTENTION=flash also stages the packed-attention kernel")
    for verb, text in (
        ("status", "shards done / running / pending / failed, ETA, and the next step"),
        ("merge", "verify the shards and write embeddings.h5 now"),
        ("export-float16", "write embeddings.float16.h5 (half the bytes) for transfer"),
        ("export-pkl", "write the seeds' wikipedia_merged.pkl from embeddings.h5"),
    ):
        _add_run(verbs.add_parser(verb, help=text))
    p = verbs.add_parser(
        "export", help="write embeddings.h5 as parquet or npy for DuckDB, LanceDB, FAISS, datasets"
    )
    _add_run(p)
    p.add_argument("--format", type=_text, help="parquet (default) or npy (FORMAT=)")
    _switch(p, "--float16", "FLOAT16", "export float16 vectors")
    p = verbs.add_parser("fetch", help="bring the verified embeddings.h5 of a cluster run to this machine")
    p.add_argument("--remote", type=_text, help="ssh host and run folder: host:/path/to/run (REMOTE=)")
    p.add_argument("--dest", type=_text, help="local folder (DEST=); default runs/<remote run name>")
    p.add_argument("--ssh-config", type=_text, help="an ssh config file instead of ~/.ssh/config")
    _switch(p, "--float16", "FLOAT16", "fetch the float16 copy")
    p = verbs.add_parser("map", help="UMAP knowledge map of a merged run: map.h5, map.html, map.png")
    _add_run(p)
    p.add_argument("--questions", type=_text, help="quiz questions JSON to place on the map (QUESTIONS=)")
    p.add_argument("--seed", type=_int("SEED", 0), help="reproducible but single-threaded UMAP (SEED=)")
    p.add_argument(
        "--pca-dims", type=_int("PCA_DIMS", 0), help="PCA dimensions before UMAP; 0: none (PCA_DIMS=)"
    )
    p.add_argument(
        "--model",
        type=_text,
        help="the run's model where it is elsewhere here, to embed the questions (MODEL=)",
    )
    p = verbs.add_parser(
        "sample", help="write a small JSONL corpus of Vital Articles leads to try the kit on"
    )
    p.add_argument("--out", type=Path, default=Path("examples/wiki-sample.jsonl"), help="where to write it")
    p.add_argument("--rows", type=_int("ROWS"), default=40, help="articles, spread over the topics")
    p = verbs.add_parser("demo", help="embed Wikipedia Vital Articles end to end")
    _add_run(p, required=False)
    p.add_argument("--rows", default="2000", help="articles to embed, or 'all' (10,033) (DEMO_ROWS=)")
    p.add_argument("--shards", type=_int("SHARDS"), default=None)
    _switch(p, "--map", "MAP", "draw the knowledge map too")
    return parser


def submit_request(args: argparse.Namespace) -> SubmitRequest:
    """Only the options given become part of the request."""
    groups: dict[str, dict[str, Any]] = {"identity": {}, "compute": {}, "corpus": {}}
    for flag, _, _, _, where in SUBMIT_OPTIONS:
        value = getattr(args, _dest(flag), None)
        if value is not None and where in groups:
            groups[where][_dest(flag)] = value
    if groups["identity"].get("model") == DEMO_MODEL:
        groups["identity"]["model"] = str(demo_model_path())
    if "model" in groups["identity"] and Path(groups["identity"]["model"]).expanduser().is_dir():
        groups["identity"]["model"] = str(Path(groups["identity"]["model"]).expanduser().resolve())
    unsupported = sorted(
        (set(groups["corpus"]) - set(CORPUS_FIELDS)) | (set(groups["compute"]) - set(COMPUTE_FIELDS))
    )
    if unsupported:
        raise ConfigError(f"{', '.join(u.upper() for u in unsupported)} is not supported by this version.")
    return SubmitRequest(
        run_dir=args.run.resolve(),
        corpus=Path(args.corpus) if getattr(args, "corpus", None) else None,
        shards=getattr(args, "shards", None),
        profile=args.profile,
        identity=groups["identity"],
        compute=groups["compute"],
        corpus_options=groups["corpus"],
        redo=args.redo,
        wait=bool(args.wait),
        map_options=map_options(args),
        export=None if getattr(args, "export", None) == OFF else getattr(args, "export", None),
        turned_off=turned_off(args),
        reuse=reuse_path(getattr(args, "reuse", None)),
    )


def turned_off(args: argparse.Namespace) -> tuple[str, ...]:
    """The saved stages this submit turns off: ``map`` for MAP=0, ``export`` for EXPORT=0."""
    return tuple(
        name
        for name, off in (
            ("map", getattr(args, "map", None) is False),
            ("export", getattr(args, "export", None) == OFF),
        )
        if off
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
    for flag, variable, _, _, _ in SUBMIT_OPTIONS:
        value = getattr(args, _dest(flag), None)
        if value is not None:
            given[variable] = _variable_text(value)
    for name, variable in (
        ("map", "MAP"),
        ("questions", "QUESTIONS"),
        ("seed", "SEED"),
        ("pca_dims", "PCA_DIMS"),
        ("export", "EXPORT"),
        ("reuse", "REUSE"),
    ):
        if getattr(args, name, None) is not None:
            given[variable] = _variable_text(getattr(args, name))
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


def map_options(args: argparse.Namespace) -> dict | None:
    """The map's options from ``--map`` (``None`` without it); a bad questions file is refused now."""
    if not getattr(args, "map", None):
        return None
    if args.questions and not Path(args.questions).is_file():
        raise ConfigError(f"Questions file {args.questions} does not exist.")
    if args.questions:  # a bad quiz is refused now, not by the map job hours later
        from knowledgemap.questions import load_questions

        load_questions(Path(args.questions))
    return {
        "questions": str(Path(args.questions).resolve()) if args.questions else None,
        "seed": args.seed,
        "pca_dims": args.pca_dims,
    }


def dispatch(args: argparse.Namespace) -> str:
    """Run the verb: submit and plan get the typed request built here; the others read their options."""
    if args.verb in ("submit", "plan"):
        return verbs.submit_or_plan(submit_request(args), dry_run=args.verb == "plan")
    return getattr(verbs, "cmd_" + args.verb.replace("-", "_"))(args)


def main(argv: list[str] | None = None) -> int:
    """Run the verb of ``argv`` under the run folder's lock; exit status 0, 2 on a kit error, 130 on ^C."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        check_run_folder(args)
        with verbs.locked(args):
            print(dispatch(args))
    except KitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130
    return 0
