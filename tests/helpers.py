"""Helpers shared by the tests that drive the real CLI, jobs and services."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

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


def jobs_here(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m jobs ARGS`` run in this process (from the repository), for a verb whose own process another
    test already starts: the map's UMAP code compiles once per test session, the model loads from warm imports.
    Its log lines go to pytest's log capture, not to ``stderr``."""
    import contextlib
    import io

    from jobs import cli

    out, err, cwd = io.StringIO(), io.StringIO(), Path.cwd()
    os.chdir(REPO)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(args))
    finally:
        os.chdir(cwd)
    proc = subprocess.CompletedProcess(["python", "-m", "jobs", *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"jobs {args} failed ({code}) in-process:\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_cli(
    verb: str, check: bool = True, env: dict | None = None, **variables: object
) -> subprocess.CompletedProcess:
    """``make -s VERB NAME=value ...`` as a user types it (``True`` is ``1``), in the repository."""
    words = [f"{name}={1 if value is True else value}" for name, value in variables.items()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.run(
        ["make", "-s", verb, *words], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"make {verb} {words} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def submitted_then_cancelled(command: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a printed ``make submit ...`` (or resubmit) as printed, without WAIT: it must submit; then its jobs are
    cancelled. For repairs whose settings run to the end in another test: proven accepted, not waited on."""
    import shlex

    from jobs import runstate
    from slurm.observe import RunObserver

    done = subprocess.run(
        ["bash", "-c", command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )
    assert done.returncode == 0 and "Submitted " in done.stdout, command + "\n" + done.stdout + done.stderr
    [run] = [Path(w.split("=", 1)[1]) for w in shlex.split(command) if w.startswith("RUN=")]
    run = run if run.is_absolute() else REPO / run
    jobs = runstate.require(run).jobs
    observer = RunObserver(run)
    observer.cancel(jobs)
    wait_for(lambda: not observer.snapshot(jobs).any_alive(), 60, "the cancelled jobs to end", poll_s=0.2)
    return done


_DIRECT: dict[
    tuple[int, tuple[str, ...]], tuple[object, np.ndarray]
] = {}  # the model kept: its id stays its own


def direct_encode(st_model, texts: list[str]) -> np.ndarray:
    """``st_model.encode(texts)``, computed once per model and texts in a pytest run: the tests that check
    a run against it several times (after each repair) encode the same corpus once."""
    key = (id(st_model), tuple(texts))
    if key not in _DIRECT:
        _DIRECT[key] = (st_model, st_model.encode(texts, convert_to_numpy=True))
    return _DIRECT[key][1]


def assert_matches_direct_encode(run: Path, records: list[dict], st_model) -> None:
    with h5py.File(run / "embeddings.h5") as h5:
        emb = h5["embeddings"][:]
        assert h5["ids"].asstr()[:].tolist() == [str(r["id"]) for r in records]
        assert h5["titles"].asstr()[:].tolist() == [r["title"] for r in records]
        assert h5["urls"].asstr()[:].tolist() == [r["url"] for r in records]
    assert cosine_rows(emb, direct_encode(st_model, [r["text"] for r in records])).min() >= 0.9999
    check = subprocess.run(["sha256sum", "-c", "embeddings.h5.sha256"], cwd=run, capture_output=True)
    assert check.returncode == 0


def task_log(run: Path, job_id: str) -> Path:
    return run / "logs" / f"{job_id}_0_log.err"


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 1.0) -> None:
    """Call ``predicate`` every ``poll_s`` until it is true. A second between polls: a predicate that
    runs the CLI must not compete with the job it watches for the machine's two cores."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll_s)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def resumed_row(log_text: str) -> int:
    """The row a resumed shard continued from ("resuming at row N" in its log); -1 if it never resumed."""
    lines = [ln for ln in log_text.splitlines() if "resuming at row " in ln]
    return int(lines[0].split("resuming at row ")[1].split()[0]) if lines else -1
