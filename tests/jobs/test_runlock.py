"""One command per run at a time: kit/runlock.py, and two submits of one run racing through the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from kit.errors import RunBusyError
from kit.runlock import LOCK_FILE, LockHolder, acquire, read_holder, release, run_lock
from tests.conftest import write_jsonl
from tests.helpers import cli_args, REPO, jobs_cli

RACES = 20

# Forks two processes per race from one interpreter that has imported the CLI, releases them at
# the same instant (a pipe closed by the parent), and each runs python -m jobs's own main().
RACE_HARNESS = r"""
import json, os, signal, sys
from pathlib import Path
from jobs.cli import main
import jobs.verbs, jobs.submit, embedder.readers.detect  # noqa: F401,E401  (loaded before the fork: both start level)
races, out, corpus, model = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
for race in range(races):
    run = out / f"run-{race}"
    gate_r, gate_w = os.pipe()
    pids = []
    for side in (0, 1):
        pid = os.fork()
        if pid == 0:
            os.close(gate_w)
            log = os.open(out / f"race-{race}-{side}.log", os.O_CREAT | os.O_WRONLY, 0o644)
            os.dup2(log, 1); os.dup2(log, 2)
            os.read(gate_r, 1)  # blocks until the parent closes the gate
            os._exit(main(["submit", "--run", str(run), "--profile", "local", "--corpus", corpus, "--model", model]))
        pids.append(pid)
    os.close(gate_r)
    os.close(gate_w)
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
    (out / f"race-{race}.rc").write_text(" ".join(map(str, codes)))
    for job in json.loads((run / "run.json").read_text())["jobs"]:  # the winner's local jobs: the race is
        pid = int(job["job_id"])  # what is tested, not the embedding; stop them before they load the model
        kids = Path(f"/proc/{pid}/task/{pid}/children")
        for p in ([int(k) for k in kids.read_text().split()] if kids.exists() else []) + [pid]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
"""


def test_second_command_is_refused_in_one_line_naming_holder_and_since(tmp_path):
    run = tmp_path / "run"
    with run_lock(run, "make submit RUN=run") as me:
        with pytest.raises(RunBusyError) as err:
            acquire(run, "make merge RUN=run")
        held = read_holder(run / LOCK_FILE)
    assert held == me and me.pid == os.getpid() and me.host == socket.gethostname()
    message = str(err.value)
    assert "\n" not in message and "'make submit RUN=run'" in message and me.started_at in message
    assert not (run / LOCK_FILE).exists()  # released


def test_a_lock_left_by_a_dead_process_on_this_host_is_taken_over(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    run = tmp_path / "run"
    run.mkdir()
    stale = LockHolder(socket.gethostname(), int(dead.stdout), "make submit RUN=run", "2026-12-01T00:00:00Z")
    (run / LOCK_FILE).write_text(json.dumps(stale.__dict__))
    me = acquire(run, "make resubmit RUN=run")
    assert read_holder(run / LOCK_FILE) == me
    release(run, me)


def test_a_lock_of_another_host_is_named_with_the_command_that_removes_it(tmp_path):
    run = tmp_path / "my run"
    run.mkdir()
    other = LockHolder("login-2", 1, "make merge RUN=x", "2026-12-01T00:00:00Z")
    (run / LOCK_FILE).write_text(json.dumps(other.__dict__))
    with pytest.raises(RunBusyError) as err:
        acquire(run, "make submit")
    assert "on login-2" in str(err.value) and f"rm '{run / LOCK_FILE}'" in str(err.value)
    assert read_holder(run / LOCK_FILE) == other  # nothing touched


def test_status_never_needs_the_lock(tmp_path, model_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "title": "A", "url": "", "text": "alpha"}])
    run = tmp_path / "run"
    jobs_cli(*cli_args("plan", run=run, profile="local", corpus=corpus, model=model_path))
    with run_lock(run, "make merge RUN=run"):
        assert "rows embedded" in jobs_cli("status", "--run", str(run)).stdout
        busy = jobs_cli("plan", "--run", str(run), check=False)
    assert (
        busy.returncode == 2
        and busy.stderr.strip().count("\n") == 0
        and "'make merge RUN=run'" in busy.stderr
    )


def test_two_simultaneous_submits_end_with_one_submission_and_one_refusal(tmp_path, model_path):
    corpus = write_jsonl(
        tmp_path / "c.jsonl",
        [{"id": f"d{i}", "title": f"T{i}", "url": "", "text": f"row {i}"} for i in range(4)],
    )
    out = tmp_path / "races"
    out.mkdir()
    subprocess.run(
        [sys.executable, "-c", RACE_HARNESS, str(RACES), str(out), str(corpus), str(model_path)],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=True,
        timeout=600,
    )
    outcomes = []
    for race in range(RACES):
        run = out / f"run-{race}"
        codes = [int(c) for c in (out / f"race-{race}.rc").read_text().split()]
        logs = [(out / f"race-{race}-{side}.log").read_text() for side in (0, 1)]
        loser = codes.index(2) if sorted(codes) == [0, 2] else None
        assert loser is not None, f"race {race}: exit codes {codes}\n{logs[0]}\n{logs[1]}"
        refusal = [ln for ln in logs[loser].splitlines() if ln.startswith("error: ")]
        assert len(refusal) == 1 and "Traceback" not in logs[loser], logs[loser]
        assert "busy" in refusal[0] or "still has jobs queued or running" in refusal[0], refusal[0]
        stages = [j["stage"] for j in json.loads((run / "run.json").read_text())["jobs"]]
        assert stages == ["embed", "merge"], stages  # one submission
        assert not (run / LOCK_FILE).exists()
        outcomes.append("lock" if "busy" in refusal[0] else "jobs")
    print("refused by the lock / by live jobs:", outcomes.count("lock"), outcomes.count("jobs"))
