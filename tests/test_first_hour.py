"""The first hour (issue 21): each mistake a newcomer makes ends in a few lines, no traceback,
naming the value and the fix; each printed repair is run as printed. Real CLI, local jobs, real model.
"""

from __future__ import annotations

import json
import os
import subprocess

import torch

from tests.conftest import merged_output
from tests.helpers import REPO, cli_args, jobs_cli, submitted_then_cancelled
from tests.test_second_touch import printed_commands, run_as_printed, tiny_corpus

QUIET = {"EMBEDKIT_PROGRESS_S": "60"}


def short_refusal(proc: subprocess.CompletedProcess, lines: int = 4) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    message = [ln for ln in proc.stderr.splitlines() if not ln.startswith("INFO ")]
    assert message and message[0].startswith("error: ") and len(message) <= lines, proc.stderr
    return "\n".join(message)


def missing_device() -> str:
    """A device this machine lacks: CUDA on a machine without it (the issue's case), else MPS."""
    return "mps" if torch.cuda.is_available() else "cuda"


def test_a_device_this_machine_lacks_is_refused_at_plan_with_a_repair_that_runs(tmp_path, model_path):
    corpus, _ = tiny_corpus(tmp_path / "c.jsonl", 6, "device")
    run = tmp_path / "dev run"
    device = missing_device()
    refused = jobs_cli(
        *cli_args("plan", run=run, profile="local", corpus=corpus, model=model_path, device=device),
        check=False,
    )
    message = short_refusal(refused)
    assert f"DEVICE={device}, but this machine has no" in message and "DEVICE=auto" in message
    resubmit = run_as_printed(f"make resubmit RUN='{run}'")  # run.json keeps the device: refused the same way
    assert resubmit.returncode == 2 and "DEVICE=auto" in resubmit.stderr, resubmit.stderr
    [command] = printed_commands(message)
    submitted_then_cancelled(command)  # DEVICE=auto runs to the end in every other local test
    assert json.loads((run / "run.json").read_text())["compute"]["device"] == "auto"


def test_a_gpu_handed_to_a_local_run_that_torch_cannot_use_is_refused_at_plan(tmp_path, model_path):
    """CUDA_VISIBLE_DEVICES set, a torch without CUDA here: DEVICE=auto is refused, DEVICE=cpu runs as printed."""
    corpus, _ = tiny_corpus(tmp_path / "c.jsonl", 5, "held")
    run = tmp_path / "held gpu"
    held = {"CUDA_VISIBLE_DEVICES": "3"}
    refused = jobs_cli(
        *cli_args("plan", run=run, profile="local", corpus=corpus, model=model_path), check=False, env=held
    )
    message = short_refusal(refused)
    assert "holds or asks for a GPU (CUDA_VISIBLE_DEVICES=3) but torch cannot use it" in message, message
    [command] = printed_commands(message)
    assert command.endswith("DEVICE=cpu")
    # CUDA_VISIBLE_DEVICES with DEVICE=cpu runs to the end in test_one_worker_per_visible_gpu_each_pinned_to_its_device
    submitted_then_cancelled(command, env=held)


def test_a_run_that_is_a_file_or_under_one_is_refused_in_a_line(tmp_path, model_path):
    corpus, _ = tiny_corpus(tmp_path / "notes.jsonl", 4, "swap")
    for verb in ("plan", "submit"):
        swapped = jobs_cli(
            verb, "--run", str(corpus), "--profile", "local", "--model", str(model_path), check=False
        )
        message = short_refusal(swapped)
        assert f"RUN={corpus} is a file, not a run folder" in message and "CORPUS=" in message
    under = jobs_cli(
        *cli_args("plan", run=corpus / "run", profile="local", corpus=corpus, model=model_path), check=False
    )
    assert f"is under {corpus}, which is a file" in short_refusal(under)
    status = jobs_cli("status", "--run", str(corpus), check=False)
    assert "is a file, not a run folder" in short_refusal(status) and "make submit RUN=" not in status.stderr
    # The printed repair of the swap runs as printed (here, from the repository, as make runs it).
    swapped = jobs_cli(*cli_args("plan", run=corpus, profile="local", model=model_path), check=False)
    [command] = [ln.strip() for ln in swapped.stderr.splitlines() if ln.strip().startswith("make plan")]
    done = run_as_printed(command)
    try:
        assert done.returncode == 0 and "nothing was queued" in done.stdout, done.stderr
    finally:
        subprocess.run(["rm", "-rf", str(REPO / "runs" / "notes")], check=True)


def test_exports_without_a_merged_file_say_where_the_run_stands(tmp_path, model_path):
    corpus, _ = tiny_corpus(tmp_path / "c.jsonl", 3, "export")
    run = tmp_path / "no merge yet"
    jobs_cli(*cli_args("plan", run=run, profile="local", corpus=corpus, model=model_path))
    for verb in ("export-pkl", "export-float16"):
        message = short_refusal(jobs_cli(verb, "--run", str(run), check=False), lines=2)
        assert "has no embeddings.h5 yet" in message
        [command] = printed_commands(message)
        assert run_as_printed(command).returncode == 0, command
    never = short_refusal(jobs_cli("export-pkl", "--run", str(tmp_path / "nowhere"), check=False), lines=2)
    assert "has no run.json" in never


def test_model_demo_works_offline_and_misspellings_are_named(tmp_path, model_path):
    corpus, _ = tiny_corpus(tmp_path / "c.jsonl", 3, "demo")
    base = ("plan", "--profile", "local", "--corpus", str(corpus))
    planned = jobs_cli(*base, "--run", str(tmp_path / "r"), "--model", "demo").stdout
    assert f"model: all-MiniLM-L6-v2 (folder {model_path.resolve()}) @ local" in planned
    typo = short_refusal(jobs_cli(*base, "--run", str(tmp_path / "t"), "--model", "./modle", check=False))
    assert "MODEL=demo" in typo and "sentence-transformers/all-MiniLM-L6-v2" not in typo
    cache = tmp_path / "cache"
    (cache / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots").mkdir(parents=True)
    misspelt = short_refusal(
        jobs_cli(
            *base,
            "--run",
            str(tmp_path / "m"),
            "--model",
            "sentence-transformers/all-MiniLM-L6-v3",
            "--cache-dir",
            str(cache),
            check=False,
        )
    )
    assert (
        "Did you mean MODEL=sentence-transformers/all-MiniLM-L6-v2" in misspelt and "MODEL=demo" in misspelt
    )
    for name in ("t", "m"):  # a refused plan leaves no empty folder behind
        assert not (tmp_path / name).exists()


def test_make_is_quiet_unless_asked(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    quiet = subprocess.run(
        ["make", "status", f"RUN={tmp_path / 'none'}"], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert "-m jobs" not in quiet.stdout + quiet.stderr and "has no run.json" in quiet.stderr
    loud = subprocess.run(
        ["make", "status", f"RUN={tmp_path / 'none'}", "V=1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    assert "-m jobs --make status" in loud.stdout


def test_status_columns_line_up_and_plan_figures_have_units(tmp_path, model_path):
    corpus, _ = tiny_corpus(tmp_path / "c.jsonl", 120, "align")
    run = tmp_path / "aligned"
    plan = jobs_cli(
        *cli_args("plan", run=run, profile="local", corpus=corpus, model=model_path, shards=12)
    ).stdout
    assert "est. cost" not in plan and "tokens" in plan
    assert f"wrote {run / 'corpus.h5'} and {run / 'run.json'}" in plan
    status = jobs_cli("status", "--run", str(run)).stdout
    rows = [ln for ln in status.splitlines() if ln.startswith("  shard-")]
    assert len(rows) == 12 and len({ln.index(" missing") for ln in rows}) == 1, status
    assert len({ln.index("/") for ln in rows}) == 1, status
    many = jobs_cli(
        *cli_args("plan", run=tmp_path / "many", profile="local", corpus=corpus, model=model_path, shards=500)
    ).stdout
    assert "SHARDS=500 on 120 rows: 120 shards of one row" in many, many


def test_a_second_visit_merges_the_same_bytes_keeps_the_model_and_says_whole_reasons(
    tmp_path, model_path, merged_run, copied_run
):
    run = copied_run
    first = merged_output(merged_run)
    assert "NORMALIZE is off, but the model's last module, Normalize" in first, first
    sidecar = run / "embeddings.h5.sha256"
    before = sidecar.read_text()
    again = jobs_cli("merge", "--run", str(run)).stdout
    assert (
        sidecar.read_text() == before and before.split()[0][:12] in again
    )  # unchanged shards: the same bytes

    copy = tmp_path / "moved checkout" / "model"
    copy.parent.mkdir()
    subprocess.run(["cp", "-rT", str(model_path), str(copy)], check=True)
    moved = jobs_cli(*cli_args("submit", run=run, model=copy, redo="0", wait=True), env=QUIET).stdout
    assert "the same weights as" in moved and "Merged 40 rows x 384" in moved, moved
    assert json.loads((run / "run.json").read_text())["identity"]["model"] == str(copy.resolve())

    fields = short_refusal(jobs_cli(*cli_args("submit", run=run, text_fields="title"), check=False), lines=3)
    assert "text_fields: text -> title" in fields and "corpus:" not in fields, fields

    shards = run / "shards"
    (shards / "shard-00001.h5").write_bytes((shards / "shard-00000.h5").read_bytes())
    (run / "embeddings.h5").unlink()
    sidecar.unlink()
    failed = jobs_cli("resubmit", "--run", str(run), "--wait", env=QUIET, check=False)
    assert failed.returncode == 2, failed.stderr
    status = jobs_cli("status", "--run", str(run)).stdout
    [merge_line] = [ln for ln in status.splitlines() if ln.startswith("merge job")]
    reason = merge_line.split("Merge refused; nothing was written:", 1)[1]
    assert "shard-00001" in reason and "make resubmit" in reason, status


def test_field_hints_after_a_plan_speak_of_make_plan(tmp_path, model_path):
    corpus, _ = tiny_corpus(tmp_path / "c.jsonl", 3, "hint")
    lines = corpus.read_text().replace('"text"', '"body"')
    corpus.write_text(lines)
    refused = jobs_cli(
        *cli_args("plan", run=tmp_path / "r", profile="local", corpus=corpus, model=model_path), check=False
    )
    assert refused.returncode == 2 and "to your make plan command" in refused.stderr, refused.stderr
    assert "make submit command" not in refused.stderr


def readme_first_example() -> list[str]:
    """The commands of the README's first corpus example, as printed (comments dropped)."""
    text = (REPO / "README.md").read_text()
    block = text.split("## Your own corpus", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readmes_first_example_runs_here_as_printed():
    commands = readme_first_example()
    assert [c.split()[1] for c in commands] == ["sample", "plan", "submit", "status", "merge"]
    assert all("PROFILE=local" in c and "MODEL=demo" in c for c in commands[1:3])
    run = REPO / "runs" / "wiki-sample"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    try:
        outputs = []
        for command in commands:
            done = run_as_printed(command)
            assert done.returncode == 0, command + "\n" + done.stderr
            assert "-m jobs" not in done.stdout, done.stdout  # make does not echo its recipes
            outputs.append(done.stdout)
        assert (
            "Wrote 40 Wikipedia leads" in outputs[0] and (REPO / "examples" / "wiki-sample.jsonl").is_file()
        )
        assert "Merged 40 rows x 384" in outputs[2] and "Merged: " in outputs[3]
    finally:
        subprocess.run(["rm", "-rf", str(run)], check=True)
    empty = run_as_printed("make plan MODEL=demo PROFILE=local")
    assert empty.returncode == 2 and "start with CORPUS=" in empty.stderr, empty.stderr


def test_staging_a_misspelt_hub_name_suggests_the_spelling(tmp_path):
    refused = jobs_cli(
        "stage-model",
        "--model",
        "sentence-transformers/all-MiniLM-L6-v3",
        check=False,
        env={"HF_HUB_CACHE": str(tmp_path / "cache")},
    )
    message = short_refusal(refused, lines=3)
    assert "Check the spelling at https://huggingface.co/sentence-transformers/all-MiniLM-L6-v3" in message
