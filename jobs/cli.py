"""python -m jobs submit|status|merge|demo: the verbs are the Make targets."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from embedder.config import EmbedConfig
from embedder.corpus import CorpusOptions
from jobs import demo as demo_lib, manifest as manifest_lib
from jobs.config import RunConfig
from jobs.fetch import fetch
from jobs.stage import stage_model
from jobs.merging import map_from_manifest, merge_from_manifest
from jobs.status import status_report
from jobs.submit import SubmitOutcome, submit
from kit.errors import ConfigError, KitError
from kit.format import OUTPUT_FILE
from merge.export_pkl import export_pkl
from merge.float16 import write_float16_copy

EMBED_OPTIONS = ("revision", "cache_dir", "device", "compute_dtype", "max_tokens_per_batch", "max_seq_length",
                 "prompt_name", "prompt", "normalize_embeddings", "flush_rows")


def _blank_is_none(value: str) -> str | None:
    """Make passes unset variables as empty strings."""
    return value or None


def _int_or_none(value: str) -> int | None:
    return int(value) if value else None


def _indices(value: str) -> list[int]:
    """'3 5' or '3,5' -> [3, 5]."""
    try:
        return [int(v) for v in value.replace(",", " ").split()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"REDO takes shard numbers like '3 5', got {value!r}") from err


def _add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, required=True, help="run folder (RUN=)")


def _add_submit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", type=_blank_is_none, help="corpus .pkl/.jsonl/.json (CORPUS=)")
    p.add_argument("--model", type=_blank_is_none, help="hub name or local folder (MODEL=)")
    p.add_argument("--shards", type=_int_or_none, help="number of shards (SHARDS=)")
    p.add_argument("--profile", type=_blank_is_none, help="where to run: local (PROFILE=)")
    p.add_argument("--text-fields", default="text", help="fields joined into the text, e.g. title,text")
    p.add_argument("--skip-bad-rows", action="store_true", help="embed the good rows, list the others")
    p.add_argument("--wait", action="store_true", help="block until embeddings.h5 exists (WAIT=1)")
    p.add_argument("--redo", type=_indices, default=[], help="recompute these shards, e.g. '3 5' (REDO=)")
    p.add_argument("--map", action="store_true", help="add the knowledge map as a third stage (MAP=1)")
    p.add_argument("--questions", type=_blank_is_none, help="quiz questions for the map (QUESTIONS=)")
    p.add_argument("--seed", type=_int_or_none, help="reproducible, single-threaded UMAP (SEED=)")
    p.add_argument("--pca-dims", type=_int_or_none, help="PCA before UMAP (PCA_DIMS=)")
    g = p.add_argument_group("embedding")
    g.add_argument("--revision", type=_blank_is_none)
    g.add_argument("--cache-dir", type=_blank_is_none)
    g.add_argument("--device", type=_blank_is_none, help="auto|cuda|mps|cpu")
    g.add_argument("--compute-dtype", type=_blank_is_none, help="float32|bfloat16|float16")
    g.add_argument("--max-tokens-per-batch", type=_int_or_none)
    g.add_argument("--max-seq-length", type=_int_or_none)
    g.add_argument("--prompt-name", type=_blank_is_none)
    g.add_argument("--prompt", type=_blank_is_none)
    g.add_argument("--normalize-embeddings", action="store_true", default=None)
    g.add_argument("--flush-rows", type=_int_or_none)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("submit", help="prepare, plan and submit a run (or what it still lacks)")
    _add_run(p)
    _add_submit_options(p)
    p = verbs.add_parser("resubmit", help="submit only missing or failed shards of a run, and a new merge")
    _add_run(p)
    p.add_argument("--profile", type=_blank_is_none, help="default: the profile the run last used (PROFILE=)")
    p.add_argument("--wait", action="store_true", help="block until embeddings.h5 exists (WAIT=1)")
    p.add_argument("--redo", type=_indices, default=[], help="also recompute these complete shards (REDO=)")
    p = verbs.add_parser("stage-model", help="download a model into the offline cache (login node, with network)")
    p.add_argument("--model", required=True, type=_blank_is_none, help="hub name (MODEL=)")
    p.add_argument("--profile", type=_blank_is_none, help="its model_cache is the target (PROFILE=)")
    p.add_argument("--revision", type=_blank_is_none)
    _add_run(verbs.add_parser("status", help="shards done / running / missing, and the repair command"))
    _add_run(verbs.add_parser("merge", help="verify the shards and write embeddings.h5 now"))
    p = verbs.add_parser("fetch", help="bring the verified embeddings.h5 of a cluster run to this machine")
    p.add_argument("--remote", required=True, help="ssh host or alias and run folder: host:/path/to/run (REMOTE=)")
    p.add_argument("--dest", type=Path, required=True, help="local folder (DEST=)")
    p.add_argument("--ssh-config", type=_blank_is_none, help="an ssh config file instead of ~/.ssh/config")
    p.add_argument("--float16", action="store_true", help="fetch the float16 copy (make export-float16 first)")
    _add_run(verbs.add_parser("export-float16", help="write embeddings.float16.h5 (half the bytes) for transfer"))
    p = verbs.add_parser("map", help="UMAP knowledge map of a merged run: map.h5, map.html, map.png")
    _add_run(p)
    p.add_argument("--questions", type=_blank_is_none, help="quiz questions JSON to place on the map (QUESTIONS=)")
    p.add_argument("--seed", type=_int_or_none, help="reproducible but single-threaded UMAP (SEED=)")
    p.add_argument("--pca-dims", type=_int_or_none, help="PCA dimensions before UMAP, default 32; 0: none (PCA_DIMS=)")
    p = verbs.add_parser("export-pkl", help="write the seeds' wikipedia_merged.pkl from embeddings.h5")
    _add_run(p)
    p = verbs.add_parser("demo", help="embed Wikipedia Vital Articles end to end")
    p.add_argument("--run", type=Path, default=Path("runs/demo"))
    p.add_argument("--rows", default="2000", help="articles to embed, or 'all' (10,033)")
    p.add_argument("--shards", type=int, default=2)
    return parser


def embed_config(args: argparse.Namespace, run_dir: Path) -> EmbedConfig:
    """EmbedConfig from the options given; MODEL may be left out when the run exists."""
    model = args.model
    if model is None:
        existing = manifest_lib.load(run_dir)
        if existing is None:
            raise ConfigError("No model given. Pass MODEL=<hub name or local folder>.")
        model = existing.embed.model
    given = {k: getattr(args, k) for k in EMBED_OPTIONS if getattr(args, k) is not None}
    if Path(model).expanduser().is_dir():  # tasks may start elsewhere: pass a local folder absolute
        model = str(Path(model).expanduser().resolve())
    return EmbedConfig(model=model, **given)


def run_config(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        run_dir=args.run.resolve(), corpus=Path(args.corpus) if args.corpus else None, shards=args.shards or 0,
        embed=embed_config(args, args.run), profile=args.profile,
        corpus_options=CorpusOptions(tuple(f.strip() for f in args.text_fields.split(",") if f.strip()),
                                     args.skip_bad_rows),
    )


def report(outcome: SubmitOutcome) -> str:
    if outcome.message:
        return outcome.message
    lines = [f"Run {outcome.run_dir}: submitted shards {outcome.pending or 'none'} "
             f"({len(outcome.skipped)} already complete); jobs {', '.join(outcome.job_ids)}"]
    if outcome.merge:
        m = outcome.merge
        q = m["quality"]
        lines.append(f"Merged {m['rows']} rows x {m['dim']} into {m['path']} in {m['seconds']:.1f} s "
                     f"(sha256 {m['sha256'][:12]}...; {m['rejected_rows']} rows rejected)")
        lines.append(f"Norms: mean {q['mean_norm']:.4f} std {q['std_norm']:.4f} min {q['min_norm']:.4f} "
                     f"max {q['max_norm']:.4f}; no NaN/Inf, no zero rows")
    else:
        lines.append(f"Watch it with: make status RUN={outcome.run_dir}")
    if outcome.map:
        lines.append(f"Map: {outcome.run_dir / 'map.html'} (trustworthiness {outcome.map['trustworthiness']:.3f})")
    return "\n".join(lines)


def map_options(args: argparse.Namespace) -> dict | None:
    if not args.map:
        return None
    if args.questions and not Path(args.questions).is_file():
        raise ConfigError(f"Questions file {args.questions} does not exist.")
    return {"questions": str(Path(args.questions).resolve()) if args.questions else None, "seed": args.seed,
            "pca_dims": args.pca_dims}


def cmd_submit(args: argparse.Namespace) -> str:
    if args.shards is None and manifest_lib.load(args.run) is None:
        args.shards = 1
    return report(submit(run_config(args), wait=args.wait, redo=args.redo, map_options=map_options(args)))


def cmd_resubmit(args: argparse.Namespace) -> str:
    if manifest_lib.load(args.run) is None:
        raise ConfigError(f"{args.run} has no run.json; start the run with make submit.")
    for name in ("corpus", "model", "shards", *EMBED_OPTIONS):
        setattr(args, name, None)
    args.text_fields, args.skip_bad_rows = "text", False
    return report(submit(run_config(args), wait=args.wait, redo=args.redo))


def cmd_map(args: argparse.Namespace) -> str:
    from knowledgemap.run import PAGE_FILE, PNG_FILE

    quality = map_from_manifest(args.run, args.questions, args.seed, args.pca_dims)
    lines = [f"Map of {args.run}: open {args.run / PAGE_FILE} (picture: {args.run / PNG_FILE})",
             f"Trustworthiness {quality['trustworthiness']:.3f} on {quality['sample']} points (k={quality['k']})"]
    if "topic_agreement_map" in quality:
        lines.append(f"Topic agreement of {quality['k']} nearest neighbours: map {quality['topic_agreement_map']:.3f}"
                     f" vs embedding {quality['topic_agreement_embedding']:.3f} "
                     f"({quality['topic_agreement_ratio']:.0%} kept)")
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> str:
    rows = None if args.rows == "all" else int(args.rows)
    config = RunConfig(run_dir=args.run, corpus=None, shards=args.shards, profile="local",
                       embed=EmbedConfig(model=str(demo_model_path := demo_lib.demo_model_path())),
                       corpus_options=CorpusOptions(skip_bad_rows=True))
    if (existing := manifest_lib.load(args.run)) and existing.corpus["source_rows"] != (rows or 10033):
        raise ConfigError(f"{args.run} holds a demo of {existing.corpus['source_rows']} rows; "
                          f"remove it or pick another RUN for {args.rows}.")
    outcome = submit(config, wait=True, records=demo_lib.vital_articles(rows))
    return report(outcome) + (f"\nModel: {demo_model_path}\nOpen it: h5py.File('{args.run}/embeddings.h5') "
                              f"(docs/FORMAT.md)\nDraw it: make map RUN={args.run}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        if args.verb == "submit":
            print(cmd_submit(args))
        elif args.verb == "resubmit":
            print(cmd_resubmit(args))
        elif args.verb == "stage-model":
            print(f"Staged {args.model} at {stage_model(args.model, args.profile, args.revision)}")
        elif args.verb == "status":
            print(status_report(args.run))
        elif args.verb == "merge":
            print(json.dumps(merge_from_manifest(args.run), indent=2))
        elif args.verb == "fetch":
            r = fetch(args.remote, args.dest, Path(args.ssh_config) if args.ssh_config else None, args.float16)
            print(f"Fetched {r.path} ({r.file_bytes:,} bytes, {r.bytes_received:,} received), sha256 {r.sha256} verified")
        elif args.verb == "export-float16":
            print(f"Wrote {write_float16_copy(args.run / OUTPUT_FILE)}")
        elif args.verb == "map":
            print(cmd_map(args))
        elif args.verb == "export-pkl":
            print(f"Wrote {export_pkl(args.run / OUTPUT_FILE, args.run / 'wikipedia_merged.pkl')}")
        elif args.verb == "demo":
            print(cmd_demo(args))
    except KitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
