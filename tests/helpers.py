"""Helpers shared by the tests that drive the real CLI, jobs and services."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import h5py

from tests.conftest import cosine_rows

REPO = Path(__file__).resolve().parents[1]


def cli_args(verb: str, **options: object) -> tuple[str, ...]:
    """``verb --name value ...`` for ``python -m jobs``: ``max_seq_length=`` is ``--max-seq-length``, a value
    is passed as ``str(value)``, and ``True`` is a bare switch (``wait=True``: ``--wait``)."""
    words = [verb]
    for name, value in options.items():
        words.append(f"--{name.replace('_', '-')}")
        if value is not True:
            words.append(str(value))
    return tuple(words)


def jobs_cli(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "jobs", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"jobs {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def assert_matches_direct_encode(run: Path, records: list[dict], st_model) -> None:
    with h5py.File(run / "embeddings.h5") as h5:
        emb = h5["embeddings"][:]
        assert h5["ids"].asstr()[:].tolist() == [str(r["id"]) for r in records]
        assert h5["titles"].asstr()[:].tolist() == [r["title"] for r in records]
        assert h5["urls"].asstr()[:].tolist() == [r["url"] for r in records]
    reference = st_model.encode([r["text"] for r in records], convert_to_numpy=True)
    assert cosine_rows(emb, reference).min() >= 0.9999
    check = subprocess.run(["sha256sum", "-c", "embeddings.h5.sha256"], cwd=run, capture_output=True)
    assert check.returncode == 0


def task_log(run: Path, job_id: str) -> Path:
    return run / "logs" / f"{job_id}_0_log.err"


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def resumed_row(log_text: str) -> int:
    """The row a resumed shard continued from ("resuming at row N" in its log); -1 if it never resumed."""
    lines = [ln for ln in log_text.splitlines() if "resuming at row " in ln]
    return int(lines[0].split("resuming at row ")[1].split()[0]) if lines else -1
