"""merge_run: verify every shard, then consolidate atomically with a SHA-256 sidecar."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import replace
from pathlib import Path


from kit import atomic
from kit.commands import index_ranges, make_command
from kit.corpusfile import corpus_info
from kit.errors import MergeError, ShardDataError, ShardError, ShardGapError, ShardMismatchError
from kit.format import PROVENANCE_PREFIX, RunPaths, shard_index
from kit.h5files import open_h5
from kit.truncation import Truncation
from kit.shardfile import (
    COMMIT_ID,
    ShardHeader,
    ShardIdentity,
    ShardSpec,
    done_shards,
    read_header,
    shard_path,
)
from merge.canary import CanaryPolicy, check_canaries, refusal
from merge.consolidate import consolidate
from merge.reused import record_in_output
from merge.summary import MergeSummary
from merge.verify import Verdict, verify

log = logging.getLogger(__name__)


SHOWN_PROBLEMS = 8  # a refusal lists at most this many problems, then counts the rest


def repair_command(run_dir: Path, redo: set[int]) -> str:
    """The one command that recomputes what a failed merge names (then merges again)."""
    return make_command("resubmit", RUN=run_dir, REDO=index_ranges(redo) if redo else None)


def collect_headers(run_dir: Path, verdict: Verdict) -> tuple[list[ShardHeader], dict[int, ShardHeader]]:
    """Headers of the done shards' files, and of ``.tmp`` files by index; unreadable files become problems."""
    complete, partial = [], {}
    for index in sorted(done_shards(run_dir)):
        try:
            complete.append(read_header(shard_path(run_dir, index)))
        except ShardError as err:
            verdict.problems.append(str(err))
            verdict.redo.add(index)
    for path in sorted(RunPaths.of(run_dir).shards.glob("shard-*.h5.tmp")):
        tmp_index = shard_index(path.with_suffix(""))
        if tmp_index is None:
            continue  # shard-*.h5.tmp but not a planned shard's name (shard-NNNNN.h5.tmp)
        with contextlib.suppress(
            ShardError
        ):  # an unreadable partial file is resumed or set aside by its task
            partial[tmp_index] = read_header(path)
    return complete, partial


def _raise_for(verdict: Verdict, run_dir: Path) -> None:
    kind = ShardGapError if verdict.missing else ShardMismatchError if verdict.redo else MergeError
    problems = verdict.problems
    shown = (
        problems
        if len(problems) <= SHOWN_PROBLEMS
        else [*problems[: SHOWN_PROBLEMS - 1], f"... and {len(problems) - SHOWN_PROBLEMS + 1} more"]
    )
    lines = ["Merge refused; nothing was written:", *(f"  - {p}" for p in shown)]
    if verdict.redo:
        lines.append(
            f"Shards to recompute: {index_ranges(verdict.redo)} (REDO moves their files to shards/rejected/)."
        )
    lines.append(f"Run: {repair_command(run_dir, verdict.redo)}")
    raise kind("\n".join(lines), redo=verdict.redo)


def _chunk_info(headers: list[ShardHeader]) -> list[dict]:
    keys = (
        "host",
        "device",
        "compute_dtype",
        "max_tokens_per_batch",
        "started_at",
        "finished_at",
        "encode_seconds",
        "truncated_rows",
        "recomputed_rows",
        "attempts",
        COMMIT_ID,
        "node",  # where and on what (kit/canary.py HARDWARE_KEYS; several attempts comma-joined)
        "gpu_index",
        "gpu_type",
        "gres_type",
        "gpu",
        "cuda_visible_devices",
        "attention",
        "torch_version",
        "cuda_version",
    )
    return [
        {
            "shard": h.path.name,
            "start_index": h.start,
            "end_index": h.stop,
            "rows": h.rows,
            **{k: h.attrs.get(k) for k in keys},
        }
        for h in sorted(headers, key=lambda h: h.start)
    ]


def _values_used(headers: list[ShardHeader], key: str) -> str:
    """How the shards were computed, e.g. ``bfloat16`` or ``bfloat16,float32`` (details in chunk_info)."""
    return ",".join(sorted({v for h in headers for v in str(h.attrs.get(key, "")).split(",") if v}))


def _write_output(
    complete: list[ShardHeader], info, tmp: Path, out: Path, attrs: dict, run_dir: Path, extra_quality: dict
):
    """Stream the shards into ``tmp``, re-open it, rename it onto ``out`` with its sidecar: (sha256, quality).

    ``extra_quality``: more entries of ``quality_metrics`` (the canary check's)."""
    dim = complete[0].identity.dim
    with atomic.removed_on_error(tmp):
        try:
            quality = consolidate(complete, info.path, tmp, attrs, extra_quality)
        except ShardDataError as err:  # name the shard to redo
            bad = {i for i in [shard_index(err.shard)] if i is not None} if err.shard else set()
            raise type(err)(
                f"Merge refused; nothing was written:\n  - {err}\nRun: {repair_command(run_dir, bad)}",
                shard=err.shard,
                redo=bad,
            ) from err
        record_in_output(
            tmp, run_dir, [(h.start, h.stop, h.attrs) for h in complete]
        )  # REUSE=: per-row flags
        with open_h5(tmp) as check:
            if check["embeddings"].shape != (info.rows, dim):
                raise MergeError(
                    f"{tmp} re-opened with shape {check['embeddings'].shape}; expected "
                    f"({info.rows}, {dim}). Re-run: {make_command('merge', RUN=run_dir)}"
                )
        return atomic.commit_with_sidecar(tmp, out), quality


# Room asked for beyond the vectors: ids, titles, urls, hashes (a generous allowance, not a measurement).
META_BYTES_PER_ROW = 256


def _no_space(cause: str, tmp: Path, out: Path, need: int, run_dir: Path, what: str) -> MergeError:
    return MergeError(
        f"Merge stopped: {cause} while writing {tmp}; {what}, {out.name} is unchanged. It needs "
        f"about {need / 2**20:,.0f} MiB free in {run_dir} ({atomic.free_bytes(run_dir) / 2**20:,.1f} "
        f"MiB now); free space, then: {make_command('merge', RUN=run_dir)}"
    )


def _shards_time(headers: list[ShardHeader]) -> str:
    """When the newest shard was finished, as its own attribute says (a shard of an older run: its file's
    time): a re-merge of the same shards writes the same bytes, also in a copy of the run folder."""
    recorded = [str(h.attrs.get("finished_at") or "") for h in headers]
    if all(recorded):
        return max(recorded)
    newest = max(h.path.stat().st_mtime for h in headers)
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(newest))


def merge_run(
    run_dir: Path,
    plan: list[ShardSpec],
    expected: ShardIdentity,
    model_name: str | None = None,
    canary: CanaryPolicy | None = None,
    truncation: Truncation | None = None,
) -> MergeSummary:
    """Verify the shards of ``run_dir`` and write ``embeddings.h5`` (+ ``.sha256``) atomically, then merge.json.

    Args:
        plan: the run's shards, to name missing ones.
        expected: the identity run.json pins; a shard with another value is refused, however many share it.
        model_name: the model's name for the ``model`` attribute (``all-MiniLM-L6-v2`` for a folder whose
            model card says so); None: the identity's model (a hub name, or the folder).
        truncation: what the plan counted of rows longer than the model's limit (run.json); merge.json
            says it with the shards' exact count.
        truncation: what the plan counted of rows longer than the model's limit (run.json); merge.json
            says it with the shards' exact count.
        canary: run.json's canary set and tolerance (merge/canary.py); None: the shards' own canary set.

    Raises:
        MergeError: naming the shards and rows, and the command that repairs the run (``redo``, ``shard``).
    """
    t0 = time.monotonic()
    paths = RunPaths.of(run_dir)
    run_dir = paths.root
    info = corpus_info(paths.corpus)
    verdict = Verdict()
    complete, partial = collect_headers(run_dir, verdict)
    verify(
        complete, partial, plan, info.rows, replace(expected, corpus_fingerprint=info.fingerprint), verdict
    )
    if not verdict.ok:
        _raise_for(verdict, run_dir)
    canaries = check_canaries(complete, canary or CanaryPolicy())
    if canaries.below:
        raise refusal(canaries, run_dir)
    out = paths.output
    tmp = atomic.tmp_path(out)
    first = complete[0].identity
    attrs = {
        "model": model_name or first.model,
        "timestamp": _shards_time(complete),
        "chunk_info": json.dumps(_chunk_info(complete)),
        "input_rows": info.source_rows,
        "rejected_rows": info.rejected_rows,
        "corpus_source": info.source,
        **first.to_attrs(prefix=PROVENANCE_PREFIX),
        **{f"{PROVENANCE_PREFIX}{k}": _values_used(complete, k) for k in ("device", "compute_dtype")},
        **canaries.attrs(),
    }
    need = info.rows * (int(first.dim or 0) * 4 + META_BYTES_PER_ROW)
    if atomic.free_bytes(run_dir) < need:  # refuse before writing: HDF5 can crash on a failed string write
        raise _no_space(atomic.NO_SPACE, tmp, out, need, run_dir, "nothing was written")
    log.info("merging %d shards, %d rows -> %s", len(complete), info.rows, out)
    try:
        digest, quality = _write_output(complete, info, tmp, out, attrs, run_dir, canaries.quality())
    except atomic.STORAGE_ERRORS as err:  # a full disk or EIO: removed_on_error left no output
        raise _no_space(
            atomic.storage_cause(err),
            tmp,
            out,
            need,
            run_dir,
            "nothing was written (the partial file is removed)",
        ) from err
    truncated = sum(int(h.attrs.get("truncated_rows", 0)) for h in complete)
    passages = getattr(first, "passage_window", None) is not None
    summary = MergeSummary(
        out,
        info.rows,
        int(first.dim or 0),
        digest,
        quality,
        info.rejected_rows,
        time.monotonic() - t0,
        truncated,
        truncation.line(passages, long_rows=truncated) if truncation else None,
    )
    summary.save(run_dir)
    return summary
