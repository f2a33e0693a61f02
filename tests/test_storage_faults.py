"""A full disk through the real CLI (local backend, real model, a real tmpfs run folder).

Mid-flush: the task fails, status says "no space left on device", and after space is freed the
same command finishes the shard (resumed, or its untrusted partial file set aside), every vector
equal to a direct encode, the shards done before untouched. Mid-merge: no output, one message,
and the same command succeeds once space is freed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import write_jsonl
from tests.helpers import cli_args, assert_matches_direct_encode, jobs_cli, wait_for
from tests.storage import fill, tmpfs

ROWS, SHARDS = 3000, 2  # shards of ~1500 rows: 3 HDF5 chunks each, so a flush can fail after others


def _records() -> list[dict]:
    return [
        {
            "id": f"d{i}",
            "title": f"Title {i}",
            "url": f"https://example.org/{i}",
            "text": f"Short sentence {i} about subject {i % 17}.",
        }
        for i in range(ROWS)
    ]


def _shard_line(run: Path, index: int) -> str:
    status = jobs_cli("status", "--run", str(run)).stdout
    return next(ln for ln in status.splitlines() if f"shard-{index:05d}.h5" in ln)


def _merge_job_done(run: Path) -> bool:
    merge_id = json.loads((run / "run.json").read_text())["jobs"][-1]["job_id"]
    status = jobs_cli("status", "--run", str(run)).stdout
    return bool(re.search(rf"merge job {merge_id}: (COMPLETED|FAILED)", status))


def test_full_disk_mid_flush_and_mid_merge_recover_with_the_same_command(tmp_path, model_path, st_model):
    records = _records()
    corpus = write_jsonl(tmp_path / "corpus.jsonl", records)
    with tmpfs(tmp_path / "fs", 96 << 20) as fs:
        run = fs / "run"
        jobs_cli(
            *cli_args(
                "submit",
                run=run,
                profile="local",
                corpus=corpus,
                model=model_path,
                shards=SHARDS,
                flush_rows=100,
                wait=True,
            )
        )
        shards = run / "shards"
        untouched = {i: (shards / f"shard-0000{i}.h5").stat().st_mtime_ns for i in (0,)}

        # Mid-flush: room for about one and a half of the shard's three chunks.
        filler = fill(fs, 1_600_000)
        redo = ("submit", "--run", str(run), "--redo", "1")
        jobs_cli(*redo)
        wait_for(lambda: " failed" in _shard_line(run, 1), 300, "shard 1 to fail")
        status = jobs_cli("status", "--run", str(run)).stdout
        assert f"No space left on device: {run} has" in status and f"make resubmit RUN={run}" in status
        assert (shards / "shard-00001.h5.tmp").exists() and not (shards / "shard-00001.h5").exists()
        filler.unlink()
        jobs_cli(*redo)  # the same command
        wait_for(lambda: _merge_job_done(run), 300, "the merge job")
        assert _shard_line(run, 1).split(" rows ", 1)[1].split()[0] == "done"  # "... 12/12 rows  done"
        assert_matches_direct_encode(run, records, st_model)
        assert {i: (shards / f"shard-0000{i}.h5").stat().st_mtime_ns for i in (0,)} == untouched
        aside = list(shards.glob("shard-00001.h5.tmp.set-aside-*"))
        status = jobs_cli("status", "--run", str(run)).stdout
        assert all(f"Set aside (kept, not resumed): shards/{p.name}" in status for p in aside)

        # Mid-merge: the output does not fit; the previous embeddings.h5 stays as it was.
        before = (run / "embeddings.h5.sha256").read_text()
        filler = fill(fs, 1_000_000)
        refused = jobs_cli("merge", "--run", str(run), check=False)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert "no space left on device" in refused.stderr and f"make merge RUN={run}" in refused.stderr
        assert (
            not (run / "embeddings.h5.tmp").exists() and (run / "embeddings.h5.sha256").read_text() == before
        )
        assert_matches_direct_encode(run, records, st_model)
        filler.unlink()
        jobs_cli("merge", "--run", str(run))
        assert_matches_direct_encode(run, records, st_model)
