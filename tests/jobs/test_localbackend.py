"""Local jobs' states come from their pids and submitit's logs, so any shell's make status sees them."""

from __future__ import annotations

import socket
import time

import submitit

from slurm.local import LocalBackend
from jobs.runstate import JobRecord
from kit.errors import CorpusError


def succeed() -> int:
    time.sleep(2)  # still running when the test first looks
    return 7


def fail() -> None:
    raise CorpusError("rows [3, 5) of corpus.jsonl are broken")


def record(job_id: str) -> JobRecord:
    return JobRecord(
        stage="embed", backend="local", job_id=job_id, host=socket.gethostname(), profile="local"
    )


def test_ended_local_jobs_read_as_completed_or_failed_with_their_error(tmp_path):
    executor = submitit.LocalExecutor(folder=tmp_path / "logs")
    jobs = [executor.submit(succeed), executor.submit(fail)]
    backend = LocalBackend(tmp_path)
    records = [record(str(j.job_id)) for j in jobs]
    assert backend.snapshot(records).tasks[records[0].job_id].state == "RUNNING"
    deadline = time.monotonic() + 120
    while backend.snapshot(records).any_alive():
        assert time.monotonic() < deadline, "local jobs did not end"
        time.sleep(0.2)
    ok, bad = (backend.snapshot(records).tasks[r.job_id] for r in records)
    assert (ok.state, bad.state) == ("COMPLETED", "FAILED")
    assert "CorpusError: rows [3, 5) of corpus.jsonl are broken" in bad.reason
