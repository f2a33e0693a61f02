"""The first hour, round two (issue 30): each mistake a newcomer makes ends in a line that says what is
wrong and a command that works as printed. Through `make`, as a user types it; local jobs, real model."""

from __future__ import annotations

import json
import re
import subprocess
import time

import h5py

from jobs.wait import Rate, progress_line
from tests.helpers import REPO, make_cli, submitted_then_cancelled, task_log
from tests.test_second_touch import tiny_corpus


def one_line_refusal(proc: subprocess.CompletedProcess) -> list[str]:
    """The kit's refusal lines (make's own "Error 2" line left out): no traceback, exit status 2."""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    return [ln for ln in proc.stderr.splitlines() if ln and not re.match(r"make(\[\d+\])?: \*\*\*", ln)]


def test_a_misspelt_variable_is_refused_with_the_nearest_name_before_anything_runs(tmp_path):
    corpus, _ = tiny_corpus(tmp_path / "c.jsonl", 3, "typo")
    run = tmp_path / "run"
    for typo, meant in (("SHRADS", "SHARDS"), ("NORMALISE", "NORMALIZE"), ("MODLE", "MODEL")):
        lines = one_line_refusal(
            make_cli(
                "submit", check=False, RUN=run, CORPUS=corpus, MODEL="demo", PROFILE="local", **{typo: 1}
            )
        )
        assert lines[0] == f"error: {typo}=: the kit has no such variable; did you mean {meant}=?", lines
        assert not run.exists()  # nothing was prepared, nothing queued


def test_a_max_seq_length_the_model_has_no_positions_for_is_refused_at_plan_and_the_repair_runs(tmp_path):
    corpus, _ = tiny_corpus(tmp_path / "c.jsonl", 4, "long")
    run = tmp_path / "run"
    variables = dict(RUN=run, CORPUS=corpus, MODEL="demo", PROFILE="local", MAX_SEQ_LENGTH=8192)
    lines = one_line_refusal(make_cli("plan", check=False, **variables))
    assert "MAX_SEQ_LENGTH=8192 is more than" in lines[0] and "(512," in lines[0], lines
    [repair] = [ln[len("Run: ") :] for ln in lines if ln.startswith("Run: ")]
    assert "MAX_SEQ_LENGTH=512" in repair and f"CORPUS={corpus}" in repair, repair
    done = subprocess.run(["bash", "-c", repair], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "nothing was queued" in done.stdout, done.stderr
    assert json.loads((run / "run.json").read_text())["identity"]["max_seq_length"] == 512


def test_a_mistyped_run_folder_names_the_run_it_resembles(tmp_path, merged_run):
    typo = merged_run.parent / (merged_run.name + "x")
    for verb in ("submit", "resubmit", "status"):
        lines = one_line_refusal(make_cli(verb, check=False, RUN=typo))
        assert f"RUN={typo} is not a run folder" in lines[0] and f"Did you mean RUN={merged_run}?" in lines[0]


def test_a_questions_file_in_another_format_is_refused_in_one_line(tmp_path, merged_run):
    quiz = tmp_path / "quiz.csv"
    quiz.write_text("question,options,answer\nWhich river?,Nile;Niger,0\n")
    lines = one_line_refusal(make_cli("submit", check=False, RUN=merged_run, MAP=1, QUESTIONS=quiz))
    assert len(lines) == 1 and f"{quiz} is not a questions file" in lines[0] and "JSONL" in lines[0], lines


def test_a_planned_run_that_was_never_submitted_says_submit_not_repair(tmp_path):
    corpus, _ = tiny_corpus(tmp_path / "c.jsonl", 4, "planned")
    run = tmp_path / "run"
    make_cli("plan", RUN=run, CORPUS=corpus, MODEL="demo", PROFILE="local")
    status = make_cli("status", RUN=run).stdout
    last = status.strip().splitlines()[-1]
    assert "Repair" not in status and last.endswith(f"Submit it with: make submit RUN={run}"), status
    submitted_then_cancelled(last.split("Submit it with: ", 1)[1])  # as printed


def test_the_summary_names_the_model_and_says_how_to_open_and_draw_the_file(merged_run):
    from tests.conftest import merged_output

    out = merged_output(merged_run)
    assert f"Open it: h5py.File('{merged_run / 'embeddings.h5'}')" in out
    assert f"Draw it: make map RUN={merged_run}" in out
    assert (
        ".venv" not in make_cli("status", RUN=merged_run).stdout.splitlines()[0]
    )  # "model all-MiniLM-L6-v2"
    with h5py.File(merged_run / "embeddings.h5") as h5:
        assert h5.attrs["model"] == "all-MiniLM-L6-v2" and h5.attrs["provenance_model"].endswith("/model")


def test_progress_moves_with_each_flush_and_the_rate_is_measured_between_flushes(tmp_path, vital_jsonl):
    """A 120-row shard flushes every 8 rows (not once at its end), and WAIT=1 never says "0.0 docs/s" of a
    run that is working (the rate itself: the test below)."""
    corpus, _ = vital_jsonl(120)
    run = tmp_path / "run"
    env = {"EMBEDKIT_PROGRESS_S": "0.5"}
    out = make_cli(
        "submit", env=env, RUN=run, CORPUS=corpus, MODEL="demo", PROFILE="local", DEVICE="cpu", WAIT=1
    ).stdout
    progress = [ln for ln in out.splitlines() if re.match(r"^  \d+/120 rows", ln)]
    assert not any("0.0 docs/s" in ln for ln in progress), out  # how often they print depends on the machine
    embed = next(j for j in json.loads((run / "run.json").read_text())["jobs"] if j["stage"] == "embed")
    log = task_log(run, embed["job_id"]).read_text()  # the embed task's log, not the merge's
    assert log.count("flushed rows") >= 15, log  # about every 5 % of the shard


def test_the_rate_and_its_eta_come_from_flushes_not_from_polls():
    rate = Rate()
    rate.add(0)
    rate.add(0)  # polls between flushes change nothing
    assert rate.per_second() == 0.0
    rate.add(100)
    time.sleep(0.2)
    rate.add(100)
    rate.add(200)
    assert 200 <= rate.per_second() <= 1000  # 100 rows in about 0.2 s
    assert "no rows flushed yet" in progress_line([], 0.0, False) and "docs/s" not in progress_line(
        [], 0, False
    )


def test_make_setups_editable_install_prints_no_warning_box():
    """The pip install of make setup's recipe, run as make runs it: setuptools' "Editable installation"
    box (advice for package authors) is not printed."""
    recipe = next(ln for ln in (REPO / "Makefile").read_text().splitlines() if "pip install -q -e" in ln)
    command = (
        recipe.strip()
        .removeprefix("$(Q)")
        .replace("$(VENV)", ".venv")
        .replace("-e '.[demo,dev]'", "--no-deps -e .")
    )
    done = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "Editable installation" not in done.stdout + done.stderr, done.stderr
