"""The stage table: which stages a submit sends comes from the saved run state and the files,
and a new stage is one table entry plus its task module, run by the fake and the local backend alike.

The fake-backend cases are plain functions; the local ones run real jobs with the real model
through ``python -m jobs`` (as ``make`` does) on a small corpus.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from jobs import runstate
from jobs.settings import StageAsk, SubmitRequest
from kit.errors import ConfigError
from jobs.stages import STAGES, register, stages_to_submit, unregister
from jobs.status import status_report
from jobs.submit import _submit_stages, submit
from slurm.local import LocalBackend
from slurm.observe import RunObserver
from tests.conftest import write_jsonl
from tests.fixtures.toystage import COUNT, COUNT_FILE, failing_embed
from tests.helpers import cli_args, jobs_cli, make_cli
from tests.jobs.fakebackend import FakeBackend, write_done_shard
from tests.jobs.test_runs import corpus_file, model_dir, request  # noqa: F401 (model_dir: a fixture)


@pytest.fixture
def count_stage():
    register(COUNT)
    yield COUNT
    unregister(COUNT.name)


def stages(run: Path) -> list[str]:
    return [j["stage"] for j in json.loads((run / "run.json").read_text())["jobs"]]


def merged_fake_run(tmp_path: Path, model: Path, **given) -> tuple[FakeBackend, Path]:
    """A run submitted to the fake backend whose shards and embeddings.h5 exist, its jobs ended."""
    fake, run = FakeBackend(), tmp_path / "run"
    submit(
        request(run, corpus=corpus_file(tmp_path, 6), model=str(model), shards=2, **given),
        say=lambda _: None,
        backend=fake,
        observer=fake,
    )
    for spec in runstate.require(run).plan:
        write_done_shard(run, spec)
    time.sleep(0.01)
    (run / "embeddings.h5").write_bytes(b"merged")  # newer than every shard
    fake.end_all()
    return fake, run


def test_map_on_a_merged_run_submits_only_the_map(tmp_path, model_dir):  # noqa: F811
    fake, run = merged_fake_run(tmp_path, model_dir)
    outcome, _, _ = submit(
        replace(request(run), stages={"map": StageAsk(True, {"seed": 1})}),
        say=lambda _: None,
        backend=fake,
        observer=fake,
    )
    assert [r.stage for r in fake.requests[-1:]] == ["map"] and fake.afters[-1] == [] and not outcome.message
    assert fake.requests[-1].options == {"questions": None, "seed": 1, "pca_dims": None}


def test_resubmit_keeps_the_saved_map_and_a_redone_shard_reruns_merge_and_map(tmp_path, model_dir):  # noqa: F811
    fake, run = merged_fake_run(tmp_path, model_dir, stages={"map": StageAsk(True)})
    before = len(fake.requests)
    submit(
        SubmitRequest(run_dir=run, redo=(1,)), say=lambda _: None, backend=fake, observer=fake
    )  # make resubmit
    assert [r.stage for r in fake.requests[before:]] == ["embed", "merge", "map"]
    embed, merge, _ = fake.requests[before:]
    assert [s.index for s in embed.shards] == [1]
    assert fake.afters[-1] == [j.job_id for j in runstate.require(run).jobs if j.stage == "merge"][-1:]


def test_export_on_a_merged_run_submits_only_the_export_and_resubmit_keeps_it(tmp_path, model_dir):  # noqa: F811
    fake, run = merged_fake_run(tmp_path, model_dir)
    submit(
        replace(request(run), stages={"export": StageAsk("parquet")}),
        say=lambda _: None,
        backend=fake,
        observer=fake,
    )
    assert [r.stage for r in fake.requests[-1:]] == ["export"] and fake.requests[-1].options == {
        "fmt": "parquet"
    }
    fake.end_all()
    before = len(fake.requests)
    submit(
        SubmitRequest(run_dir=run, redo=(0,)), say=lambda _: None, backend=fake, observer=fake
    )  # make resubmit
    assert [r.stage for r in fake.requests[before:]] == ["embed", "merge", "export"]


def test_a_shard_newer_than_the_merged_file_makes_the_merge_due(tmp_path, model_dir):  # noqa: F811
    fake, run = merged_fake_run(tmp_path, model_dir)
    assert stages_to_submit(run, runstate.require(run)) == []
    time.sleep(0.01)
    write_done_shard(run, runstate.require(run).plan[0])  # rewritten after the merge
    assert [r.stage for r in stages_to_submit(run, runstate.require(run))] == ["merge"]


def test_a_registered_toy_stage_runs_through_the_fake_backend_after_its_stage(
    tmp_path,
    model_dir,  # noqa: F811
    count_stage,
):
    fake, run = FakeBackend(), tmp_path / "run"
    submit(
        request(run, corpus=corpus_file(tmp_path, 6), model=str(model_dir), shards=2),
        say=lambda _: None,
        backend=fake,
        observer=fake,
    )
    assert [r.stage for r in fake.requests] == ["embed", "merge", "count"]
    merge_job = [j for j in runstate.require(run).jobs if j.stage == "merge"][0]
    assert fake.afters[-1] == [merge_job.job_id] and fake.requests[-1].task is COUNT.task
    assert list(STAGES)[-1] == "count"


def wait_ended(run: Path, jobs, limit_s: float = 300) -> None:
    observer, deadline = RunObserver(run), time.monotonic() + limit_s
    while observer.snapshot(jobs).any_alive():
        assert time.monotonic() < deadline, "local jobs did not end"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    from jobs.demo import vital_articles

    return write_jsonl(tmp_path_factory.mktemp("corpus") / "vital.jsonl", list(vital_articles(24)))


def test_through_make_map_export_and_a_toy_optional_stage_follow_the_saved_state(copied_run):
    """A site's stage with one Make variable (tests/fixtures/toyoption.py, added by EMBEDKIT_STAGES)
    goes through make submit, status and resubmit with nothing else changed, beside MAP and EXPORT."""
    run, toy = copied_run, {"EMBEDKIT_STAGES": "tests.fixtures.toyoption"}
    before = len(stages(run))  # the merged run's embed and merge jobs
    out = make_cli(
        "submit", env=toy, RUN=run, STAMP="hello", WAIT=1
    ).stdout  # on a merged run: the stamp alone
    assert stages(run)[before:] == ["stamp"] and "Stamp: hello 40" in out, out
    assert json.loads((run / "run.json").read_text())["stage_options"] == {"stamp": {"text": "hello"}}
    assert "stamp job" in make_cli("status", env=toy, RUN=run).stdout

    out = make_cli("submit", env=toy, RUN=run, MAP=1, WAIT=1).stdout  # MAP=1: the map alone
    assert stages(run)[before + 1 :] == ["map"] and "Map: " in out and "Stamp" not in out, out

    out = make_cli("resubmit", env=toy, RUN=run, REDO=0, WAIT=1).stdout  # keeps the map and the stamp
    assert stages(run)[before + 2 :] == ["embed", "merge", "map", "stamp"], out
    assert "Map: " in out and "Stamp: hello 40" in out, out
    assert (run / "map.h5").stat().st_mtime_ns > (run / "embeddings.h5").stat().st_mtime_ns

    out = make_cli("submit", env=toy, RUN=run, EXPORT="parquet", STAMP=0, WAIT=1).stdout
    assert stages(run)[before + 6 :] == ["export"] and f"Export: {run / 'embeddings.parquet'}" in out, out
    assert "stamp" not in json.loads((run / "run.json").read_text())["stage_options"]

    typo = make_cli("submit", check=False, RUN=run, STAMPP="x")  # without the plugin: not a kit variable
    assert typo.returncode == 2 and "STAMPP=: the kit has no such variable" in typo.stderr, typo.stderr


def test_a_registered_toy_stage_runs_as_a_local_job_after_the_merge(copied_run, count_stage):
    run = copied_run
    backend = LocalBackend(run)
    outcome, _, state = submit(SubmitRequest(run_dir=run), say=lambda _: None, backend=backend)
    assert [j.stage for j in outcome.jobs] == ["count"]
    wait_ended(run, outcome.jobs)
    assert (run / COUNT_FILE).read_text() == "40\n"
    assert "count job" in status_report(run, runstate.require(run), RunObserver(run).snapshot(state.jobs))


def test_a_failing_local_embed_keeps_the_merge_from_running_and_status_says_why(
    tmp_path, small_corpus, model_path
):
    run = tmp_path / "failing run"
    jobs_cli(
        *cli_args(
            "plan", run=run, profile="local", device="cpu", corpus=small_corpus, model=model_path, shards=2
        )
    )
    state = runstate.require(run)
    requests = [replace(r, task=failing_embed) if r.array else r for r in stages_to_submit(run, state)]
    assert [r.stage for r in requests] == ["embed", "merge"]
    state = _submit_stages(run, state, LocalBackend(run), requests, say=lambda _: None)
    wait_ended(run, state.jobs)
    assert not (run / "embeddings.h5").exists()
    merge = [j for j in state.jobs if j.stage == "merge"][0]
    log = (run / "logs" / f"{merge.job_id}_0_log.out").read_text()
    assert "waiting for jobs" in log and "starting" not in log.split("waiting for jobs", 1)[1]
    report = status_report(run, state, RunObserver(run).snapshot(state.jobs))
    assert f"merge job {merge.job_id}: FAILED" in report and "DependencyNeverSatisfied" in report, report
    assert "this toy embed fails on purpose" in report and "Repair with: make resubmit" in report, report


def test_plan_with_redo_moves_no_file_and_shows_the_shards_it_would_redo(tmp_path, model_dir):  # noqa: F811
    fake, run = merged_fake_run(tmp_path, model_dir)
    files = sorted(p.name for p in (run / "shards").iterdir())
    for redo in ((1,), "all"):
        outcome, _, _ = submit(
            replace(request(run), redo=redo), say=lambda _: None, dry_run=True, backend=fake, observer=fake
        )
        assert sorted(p.name for p in (run / "shards").iterdir()) == files  # nothing set aside
        assert (run / "embeddings.h5").read_bytes() == b"merged"
        assert outcome.pending == ([1] if redo == (1,) else [0, 1]), outcome
        assert outcome.skipped == ([0] if redo == (1,) else [])
    outcome, _, _ = submit(replace(request(run), redo=(1,)), say=lambda _: None, backend=fake, observer=fake)
    assert [p.name for p in (run / "shards" / "rejected").iterdir()][0].startswith("shard-00001.")
    assert outcome.pending == [1] and [r.stage for r in fake.requests[-2:]] == ["embed", "merge"]


def test_map_0_and_export_0_turn_off_the_stages_the_run_had_saved(tmp_path, model_dir):  # noqa: F811
    from jobs.cli import build_parser, stage_asks

    fake, run = merged_fake_run(
        tmp_path, model_dir, stages={"map": StageAsk(True, {"seed": 1}), "export": StageAsk("parquet")}
    )
    assert runstate.require(run).stage_options == {
        "map": {"questions": None, "seed": 1, "pca_dims": None},
        "export": {"fmt": "parquet"},
    }
    args = build_parser().parse_args(["submit", "--run", str(run), "--map", "0", "--export", "0"])
    asks = stage_asks(args)
    assert asks == {"map": StageAsk(False), "export": StageAsk(False)}
    submit(replace(request(run), redo=(0,), stages=asks), say=lambda _: None, backend=fake, observer=fake)
    assert runstate.require(run).stage_options == {}
    assert [r.stage for r in fake.requests[-2:]] == ["embed", "merge"]


def test_stage_options_are_kept_changed_or_refused_as_asked(tmp_path, model_dir):  # noqa: F811
    fake, run = merged_fake_run(tmp_path, model_dir, stages={"map": StageAsk(True, {"seed": 1})})
    submit(
        replace(request(run), stages={"map": StageAsk(None, {"pca_dims": 8})}),
        say=print,
        backend=fake,
        observer=fake,
    )
    assert runstate.require(run).stage_options["map"] == {"questions": None, "seed": 1, "pca_dims": 8}
    from jobs.stages import STAGES, asked_options

    with pytest.raises(
        ConfigError, match=r"SEED= set options of the map stage, which this run does not have: add MAP=1"
    ):
        asked_options(STAGES["map"], None, StageAsk(None, {"seed": 3}))
    with pytest.raises(ConfigError, match=r"MAP=0 turns the map stage off; SEED= would be unused"):
        asked_options(STAGES["map"], {"seed": 1}, StageAsk(False, {"seed": 3}))
