"""Local execution through submitit's LocalExecutor: one worker per visible GPU, then the merge.

submitit's local jobs are processes whose job id is their pid; they outlive ``make submit``.
The local executor has no dependencies, so the merge job waits for the embed pids itself.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

import submitit

from embedder.config import EmbedConfig, ShardSpec
from embedder.run import embed_shards
from jobs.plan import assign_workers
from kit.format import LOGS_DIR

POLL_S = 2.0
CONTROLLER_LOG = "local-controllers.log"  # what submitit's local controllers print themselves


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (ordinals or UUIDs)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        return []


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    return True


def jobs_alive(jobs: list[dict]) -> list[dict]:
    """The recorded local jobs of this host that still run."""
    host = socket.gethostname()
    return [j for j in jobs if j.get("executor") == "local" and j.get("host") == host
            and pid_alive(int(j["job_id"]))]


def _executor(run_dir: Path, timeout_min: int, gpu: str | None) -> submitit.LocalExecutor:
    ex = submitit.LocalExecutor(folder=run_dir / LOGS_DIR)
    params: dict = {"timeout_min": timeout_min}
    if gpu is not None:
        # submitit's own visible_gpus takes ordinals only; an export keeps "4" or a GPU UUID as given.
        params["setup"] = [f"export CUDA_VISIBLE_DEVICES={shlex.quote(gpu)}"]
    ex.update_parameters(**params)
    return ex


@contextlib.contextmanager
def detached_stdio(log_path: Path) -> Iterator[None]:
    """Local jobs inherit fds 1 and 2; point them at a log file while they start.

    Otherwise ``make submit | tee`` (or any pipe) would stay open until the last job ends.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def submit_embed(run_dir: Path, specs: list[ShardSpec], embed: EmbedConfig, timeout_min: int) -> list:
    """One local job per visible GPU (one on a CPU-only machine), each running its shards in turn."""
    gpus = visible_gpus()
    groups = assign_workers(specs, len(gpus) or 1)
    with detached_stdio(run_dir / LOGS_DIR / CONTROLLER_LOG):
        return [_executor(run_dir, timeout_min, gpus[w] if gpus else None)
                .submit(embed_shards, group, str(run_dir), embed) for w, group in enumerate(groups)]


def merge_when_done(pids: list[int], run_dir: str) -> dict:
    """The local merge job: wait until the embed processes end, then merge (like afterany)."""
    from jobs.merging import merge_from_manifest

    while any(pid_alive(p) for p in pids):
        time.sleep(POLL_S)
    return merge_from_manifest(Path(run_dir))


def submit_merge(run_dir: Path, embed_jobs: list, timeout_min: int):
    pids = [int(j.job_id) for j in embed_jobs]
    with detached_stdio(run_dir / LOGS_DIR / CONTROLLER_LOG):
        return _executor(run_dir, timeout_min, None).submit(merge_when_done, pids, str(run_dir))


def map_when_merged(merge_pid: int, run_dir: str, map_options: dict) -> dict:
    """The local map job: wait for the merge process, then map if the merged file exists (afterok)."""
    from jobs.merging import map_from_manifest

    while pid_alive(merge_pid):
        time.sleep(POLL_S)
    return map_from_manifest(Path(run_dir), **map_options)


def submit_map(run_dir: Path, merge_job, timeout_min: int, map_options: dict):
    with detached_stdio(run_dir / LOGS_DIR / CONTROLLER_LOG):
        return _executor(run_dir, timeout_min, None).submit(map_when_merged, int(merge_job.job_id), str(run_dir),
                                                            map_options)
