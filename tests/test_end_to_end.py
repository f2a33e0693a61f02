"""The real path: python -m jobs -> submitit local jobs -> shards -> merge, with the real model."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import h5py
import numpy as np

from embedder.run import flush_rows_for
from kit.process import pid_alive
from tests.conftest import merged_output, merged_records, write_jsonl
from tests.helpers import (
    cli_args,
    assert_matches_direct_encode,
    children,
    jobs_cli,
    make_cli,
    resumed_row,
    task_log,
    wait_for,
)


def test_submit_wait_merge_status_resubmit_and_redo(merged_run, copied_run, st_model):
    run, records = copied_run, merged_records()
    assert "Merged 40 rows x 384" in merged_output(merged_run)
    assert_matches_direct_encode(run, records, st_model)
    assert sorted(p.name for p in (run / "shards").iterdir()) == [f"shard-0000{i}.h5" for i in range(2)]

    again = jobs_cli("submit", "--run", str(run)).stdout
    assert "Nothing to do" in again
    status = jobs_cli("status", "--run", str(run)).stdout
    assert sum(ln.endswith(" done") for ln in status.splitlines()) == 2
    assert "40/40 rows embedded" in status and "Merged:" in status

    # A damaged shard: the merge refuses and names the repair; REDO recomputes only that shard.
    with h5py.File(run / "shards" / "shard-00001.h5", "a") as h5:
        h5["embeddings"][-5:] = 0
    stop = json.loads((run / "run.json").read_text())["plan"][1]["stop"]
    refused = jobs_cli("merge", "--run", str(run), check=False)
    assert (
        refused.returncode == 2
        and f"shard-00001.h5 has all-zero rows at rows [{stop - 5}, {stop})" in refused.stderr
    )
    assert f"make resubmit RUN={run} REDO=1" in refused.stderr
    untouched = (run / "shards" / "shard-00000.h5").stat().st_mtime_ns
    jobs_cli(*cli_args("submit", run=run, redo=1, wait=True))
    assert_matches_direct_encode(run, records, st_model)
    assert (run / "shards" / "shard-00000.h5").stat().st_mtime_ns == untouched
    assert len(list((run / "shards" / "rejected").glob("shard-00001.*.h5"))) == 1


def test_kill_9_mid_write_then_rerun_resumes_to_the_same_result(tmp_path, vital_jsonl, model_path, st_model):
    corpus, records = vital_jsonl(240)
    run = tmp_path / "killed"
    jobs_cli(
        *cli_args(
            "submit", run=run, profile="local", corpus=corpus, model=model_path, shards=1, flush_rows=16
        )
    )
    jobs = json.loads((run / "run.json").read_text())["jobs"]
    embed_id, merge_id = jobs[0]["job_id"], jobs[1]["job_id"]
    busy = jobs_cli("submit", "--run", str(run), check=False)  # a second submit while jobs live
    assert busy.returncode == 2 and "still has jobs queued or running" in busy.stderr

    log = task_log(run, embed_id)
    wait_for(
        lambda: log.exists() and log.read_text().count("flushed rows") >= 3, 240, "three flushes", poll_s=0.2
    )

    for pid in children(int(embed_id)) + [int(embed_id)]:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(int(merge_id)), 120, "the merge job to give up")
    # Locally, as on Slurm, the merge runs only after its shards' jobs succeeded: it names the killed job.
    merge_log = task_log(run, merge_id).read_text()
    assert f"DependencyNeverSatisfied: job(s) {embed_id} before this one did not succeed" in merge_log, (
        merge_log
    )
    status = jobs_cli("status", "--run", str(run)).stdout
    gave_up = re.search(r"shard-00000\.h5\s+\[0, 240\)\s+(\d+)/240 rows", status)
    assert gave_up and "done" not in status.split("shard-00000.h5")[1].splitlines()[0], status
    flushed = int(gave_up.group(1))
    three_flushes = 3 * flush_rows_for(240, 16)  # a 240-row shard flushes in steps of about 5 %
    assert (
        flushed >= three_flushes
        and not (run / "embeddings.h5").exists()
        and (run / "shards" / "shard-00000.h5.tmp").exists()
    )

    jobs_cli("submit", "--run", str(run), "--wait")
    new_embed = json.loads((run / "run.json").read_text())["jobs"][2]["job_id"]
    # From the last flush whose checksum reads back (a kill between checksum and row count redoes that chunk):
    # not from zero, and never past what status found flushed.
    assert three_flushes <= resumed_row(task_log(run, new_embed).read_text()) <= flushed
    assert_matches_direct_encode(run, records, st_model)
    with h5py.File(run / "shards" / "shard-00000.h5") as h5:
        assert h5.attrs["attempts"] == 2


def test_bad_corpus_refused_then_skipped_rows_are_listed(tmp_path, vital_jsonl, model_path, st_model):
    _, records = vital_jsonl(12)
    bad = [
        {"id": "x1", "title": "t", "url": "u", "text": ""},
        {**records[0]},
        {"id": "x3", "title": "t", "url": "u", "text": "nul\x00"},
    ]
    corpus = write_jsonl(tmp_path / "bad corpus.jsonl", records[:6] + bad + records[6:])
    args = cli_args("submit", run=tmp_path / "bad", profile="local", corpus=corpus, model=model_path)
    refused = jobs_cli(*args, check=False)
    assert refused.returncode == 2
    assert "3 of 15 rows cannot be embedded" in refused.stderr and "row 7 id=" in refused.stderr
    assert not (tmp_path / "bad" / "logs").exists()  # refused before any job

    jobs_cli(*args, "--skip-bad-rows", "--wait")
    assert_matches_direct_encode(tmp_path / "bad", records, st_model)
    with h5py.File(tmp_path / "bad" / "embeddings.h5") as h5:
        assert h5["rejected/row"][:].tolist() == [6, 7, 8]
        assert h5["rejected/reason"].asstr()[:].tolist() == [
            "empty text",
            "duplicate id (first at row 0)",
            "NUL byte in text",
        ]
        assert h5.attrs["input_rows"] == 15 == h5["ids"].shape[0] + h5["rejected/row"].shape[0]


def test_missing_model_fails_before_any_job(tmp_path, vital_jsonl):
    corpus, _ = vital_jsonl(5)
    env_cache = tmp_path / "empty cache"
    proc = jobs_cli(
        *cli_args(
            "submit",
            run=tmp_path / "r",
            profile="local",
            corpus=corpus,
            model="sentence-transformers/not-staged",
            cache_dir=env_cache,
        ),
        check=False,
    )
    assert proc.returncode == 2
    assert "not-staged" in proc.stderr and str(env_cache) in proc.stderr and "never download" in proc.stderr
    assert not (tmp_path / "r" / "logs").exists()


def test_make_demo_embeds_vital_articles_with_topics_where_run_says(tmp_path):
    from jobs.verbs import demo_run_dir

    chosen = tmp_path / "my demo"
    out = make_cli("demo", RUN=chosen, DEMO_ROWS=40).stdout
    assert "Merged 40 rows x 384" in out and "Norms: mean" in out and "Draw it: make map RUN=" in out
    with h5py.File(chosen / "embeddings.h5") as h5:
        topics = set(h5["topics"].asstr()[:])
        assert len(topics) >= 3 and np.isfinite(h5["embeddings"][:]).all()
    # Without RUN, each size has its own folder: a larger demo sits next to a smaller one.
    assert [demo_run_dir(rows) for rows in ("2000", "12", "all")] == [
        Path("runs/demo"),
        Path("runs/demo-12"),
        Path("runs/demo-all"),
    ]


def test_one_worker_per_visible_gpu_each_pinned_to_its_device(tmp_path, vital_jsonl, model_path, st_model):
    corpus, records = vital_jsonl(24)
    run = tmp_path / "gpus"
    # No GPU here: DEVICE=cpu on purpose (auto refuses a held GPU it cannot use), each task sees only its device.
    out = jobs_cli(
        *cli_args(
            "submit",
            run=run,
            profile="local",
            corpus=corpus,
            model=model_path,
            shards=4,
            wait=True,
            device="cpu",
        ),
        env={"CUDA_VISIBLE_DEVICES": "3,5"},
    ).stdout
    stages = [j["stage"] for j in json.loads((run / "run.json").read_text())["jobs"]]
    assert stages == ["embed", "embed", "merge"] and "Merged 24 rows" in out  # two workers, then the merge
    seen = {}
    for i in range(4):
        with h5py.File(run / "shards" / f"shard-0000{i}.h5") as h5:
            seen[i] = h5.attrs["cuda_visible_devices"]
    assert seen == {0: "3", 1: "5", 2: "3", 3: "5"}
    assert_matches_direct_encode(run, records, st_model)


def _fake_hub_cache(cache: Path, repo_id: str, model_path: Path, revision: str) -> None:
    """The hub cache layout (models--org--name/refs/main, snapshots/<rev>/) over the packaged model."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for item in model_path.iterdir():
        (snapshot / item.name).symlink_to(item)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


def test_hub_name_loads_from_the_offline_cache_and_records_the_revision(tmp_path, vital_jsonl, model_path):
    corpus, _ = vital_jsonl(10)
    cache, revision = tmp_path / "hub cache", "0123456789abcdef0123456789abcdef01234567"
    _fake_hub_cache(cache, "sentence-transformers/all-MiniLM-L6-v2", model_path, revision)
    run = tmp_path / "hub"
    jobs_cli(
        *cli_args(
            "submit",
            run=run,
            profile="local",
            corpus=corpus,
            model="sentence-transformers/all-MiniLM-L6-v2",
            cache_dir=cache,
            wait=True,
        )
    )
    with h5py.File(run / "embeddings.h5") as h5:
        assert h5.attrs["model"] == "sentence-transformers/all-MiniLM-L6-v2"
        assert h5.attrs["provenance_model_revision"] == revision
        assert len(h5.attrs["provenance_model_fingerprint"]) == 64
