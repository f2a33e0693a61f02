"""A run touched a second time, as plain functions over a fake backend (no model, no scheduler).

Each refusal names old and new values and the ways out; execution settings change freely;
status reads the files first and the scheduler second; the busy check, resubmit and REDO.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jobs import runstate
from jobs.settings import SubmitRequest
from jobs.status import shard_statuses, status_report
from jobs.submit import submit
from kit.errors import ConfigError, RunBusyError
from tests.conftest import write_jsonl
from tests.jobs.fakebackend import FakeBackend, write_done_shard


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """A local model folder: resolve_model and the weights fingerprint need only its files."""
    folder = tmp_path / "models" / "tiny"
    folder.mkdir(parents=True)
    save_weights(folder, 1.0)
    return folder


def save_weights(folder: Path, value: float) -> None:
    """A whole (tiny) safetensors file: submit checks the weight files' headers and sizes."""
    from safetensors.numpy import save_file

    save_file({"w": np.full(4, value, dtype=np.float32)}, str(folder / "model.safetensors"))


def corpus_file(tmp_path: Path, n: int, name: str = "corpus.jsonl", word: str = "text") -> Path:
    return write_jsonl(
        tmp_path / name,
        [
            {"id": f"d{i}", "title": f"T{i}", "url": "", "text": f"{word} {i}", "body": f"body {i}"}
            for i in range(n)
        ],
    )


def request(run: Path, **given) -> SubmitRequest:
    identity = {k: given.pop(k) for k in ("model", "prompt", "max_seq_length") if k in given}
    compute = {k: given.pop(k) for k in ("device", "max_tokens_per_batch", "flush_rows") if k in given}
    corpus_options = {k: given.pop(k) for k in ("text_fields",) if k in given}
    return SubmitRequest(
        run_dir=run, identity=identity, compute=compute, corpus_options=corpus_options, **given
    )


def run_submit(backend: FakeBackend, req: SubmitRequest, records=None):
    lines: list[str] = []
    outcome, _, state = submit(req, records, say=lines.append, backend=backend, observer=backend)
    return outcome, state, lines


def test_busy_run_is_refused_with_a_status_command_that_quotes_the_path(tmp_path, model_dir):
    fake, run = FakeBackend(), tmp_path / "my run é"
    run_submit(fake, request(run, corpus=corpus_file(tmp_path, 6), model=str(model_dir), shards=2))
    with pytest.raises(RunBusyError) as err:
        run_submit(fake, request(run))
    assert "f1" in str(err.value) and f"make status RUN='{run}'" in str(err.value)


def test_status_tells_running_pending_with_reason_failed_and_cancelled_before_start(tmp_path, model_dir):
    fake, run = FakeBackend(), tmp_path / "run"
    _, state, _ = run_submit(
        fake, request(run, corpus=corpus_file(tmp_path, 10), model=str(model_dir), shards=5)
    )
    write_done_shard(run, state.plan[4])
    fake.set("f1_0", "RUNNING")
    fake.set("f1_1", "PENDING", "Nodes required for job are DOWN, DRAINED or reserved", started=False)
    fake.set("f1_2", "FAILED", "exit 1:0")
    fake.set("f1_3", "CANCELLED", "", started=False)
    states = {
        s.spec.index: (s.state, s.detail) for s in shard_statuses(run, state, fake.snapshot(state.jobs))
    }
    assert states == {
        0: ("running", ""),
        1: ("pending", "Nodes required for job are DOWN, DRAINED or reserved"),
        2: ("failed", "FAILED exit 1:0"),
        3: ("cancelled", "cancelled before it started"),
        4: ("done", ""),
    }
    report = status_report(run, state, fake.snapshot(state.jobs))
    assert "pending  (task f1_1; Nodes required" in report and "merge job f2: PENDING (Dependency)" in report
    assert "Watch it with: make status RUN=" in report  # jobs alive: no repair command yet


def test_status_answers_from_the_files_when_the_scheduler_is_unreachable(tmp_path, model_dir):
    fake, run = FakeBackend(), tmp_path / "run"
    _, state, _ = run_submit(
        fake, request(run, corpus=corpus_file(tmp_path, 4), model=str(model_dir), shards=2)
    )
    write_done_shard(run, state.plan[0])
    fake.reachable = False
    report = status_report(run, state, fake.snapshot(state.jobs))
    assert "fake scheduler unreachable" in report and "1 done, 1 missing" in report
    assert "whether jobs still run is unknown" in report and "Repair with" not in report


def test_resubmit_submits_only_unfinished_shards_and_redo_sets_aside(tmp_path, model_dir):
    fake, run = FakeBackend(), tmp_path / "run"
    _, state, _ = run_submit(
        fake, request(run, corpus=corpus_file(tmp_path, 9), model=str(model_dir), shards=3)
    )
    write_done_shard(run, state.plan[0])
    write_done_shard(run, state.plan[2])
    fake.end_all("FAILED")
    outcome, _, _ = run_submit(fake, request(run))
    assert outcome.pending == [1] and [s.index for s in fake.requests[-2].shards] == [1]
    fake.end_all("COMPLETED")
    write_done_shard(run, state.plan[1])
    outcome, _, _ = run_submit(fake, request(run, redo=(2,)))
    assert outcome.pending == [2]
    assert len(list((run / "shards" / "rejected").glob("shard-00002.*.h5"))) == 1


def test_changed_corpus_or_text_fields_is_refused_naming_old_new_and_the_ways_out(tmp_path, model_dir):
    fake, run = FakeBackend(), tmp_path / "run"
    _, state, _ = run_submit(
        fake, request(run, corpus=corpus_file(tmp_path, 6), model=str(model_dir), shards=2)
    )
    write_done_shard(run, state.plan[0])
    fake.end_all()
    other = corpus_file(tmp_path, 6, "other.jsonl", word="different")
    with pytest.raises(ConfigError) as err:
        run_submit(fake, request(run, corpus=other))
    text = str(err.value)
    assert "corpus:" in text and "corpus.jsonl (6 rows" in text and "other.jsonl (6 rows" in text
    assert "another RUN=" in text and "REDO=all" in text and not (run / "corpus.h5.candidate").exists()
    with pytest.raises(ConfigError, match=r"text_fields: text -> title,text"):
        run_submit(fake, request(run, text_fields=("title", "text")))
    same_content = corpus_file(tmp_path, 6, "copy.jsonl")  # another file, the same rows: fine
    run_submit(fake, request(run, corpus=same_content))


def test_redo_all_recomputes_everything_from_the_new_corpus(tmp_path, model_dir):
    fake, run = FakeBackend(), tmp_path / "run"
    _, state, _ = run_submit(
        fake, request(run, corpus=corpus_file(tmp_path, 6), model=str(model_dir), shards=2)
    )
    write_done_shard(run, state.plan[0])
    fake.end_all()
    outcome, new, lines = run_submit(
        fake, request(run, corpus=corpus_file(tmp_path, 8, "new.jsonl"), redo="all")
    )
    assert new.corpus.rows == 8 and outcome.pending == [0, 1] and "REDO=all" in lines[0]
    assert len(list((run / "shards" / "rejected").glob("shard-00000.*.h5"))) == 1
    assert {r.stage for r in fake.requests[-2:]} == {"embed", "merge"}


def test_execution_settings_change_on_a_resubmit_and_are_recorded(tmp_path, model_dir):
    fake, run = FakeBackend(), tmp_path / "run"
    run_submit(fake, request(run, corpus=corpus_file(tmp_path, 6), model=str(model_dir), device="cpu"))
    fake.end_all("FAILED")  # an out-of-memory failure, say
    _, state, _ = run_submit(fake, request(run, max_tokens_per_batch=4096, device="auto", flush_rows=64))
    assert (state.compute.max_tokens_per_batch, state.compute.device, state.compute.flush_rows) == (
        4096,
        "auto",
        64,
    )
    assert fake.requests[-2].options["compute"] == state.compute
    assert runstate.load(run).compute == state.compute
    assert runstate.load(run).scheduler_version == "fake 1.0"  # the scheduler's release, detected at submit


def test_a_model_change_is_refused_once_shards_exist_but_not_before(tmp_path, model_dir):
    fake, run = FakeBackend(), tmp_path / "run"
    _, state, _ = run_submit(fake, request(run, corpus=corpus_file(tmp_path, 4), model=str(model_dir)))
    fake.end_all("FAILED")
    _, state, lines = run_submit(fake, request(run, prompt="query: "))  # nothing computed yet: taken
    assert state.identity.prompt == "query: " and "nothing computed yet" in lines[0]
    fake.end_all("FAILED")
    write_done_shard(run, state.plan[0])
    save_weights(model_dir, 2.0)
    with pytest.raises(ConfigError, match="model weights"):
        run_submit(fake, request(run))


def test_more_shards_than_rows_then_the_identical_command_is_not_refused(tmp_path, model_dir):
    fake, run = FakeBackend(), tmp_path / "run"
    req = request(run, corpus=corpus_file(tmp_path, 5), model=str(model_dir), shards=50)
    _, state, _ = run_submit(fake, req)
    assert len(state.plan) == 5 and state.requested_shards == 50
    fake.end_all("FAILED")
    run_submit(fake, req)  # identical: accepted
    write_done_shard(run, state.plan[0])
    fake.end_all("FAILED")
    with pytest.raises(ConfigError, match="SHARDS=3 would cut its rows differently"):
        run_submit(fake, request(run, shards=3))


def test_old_run_json_is_read_and_a_foreign_one_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"format": "something-else/3"}')
    with pytest.raises(ConfigError, match="not an embedkit run manifest"):
        runstate.load(run)
    (run / "run.json").write_text(
        '{"format": "embedkit-run/1", "created_at": "x", "corpus": {"source": "c.jsonl", "rows": 2, '
        '"source_rows": 2, "fingerprint": "ab", "text_fields": ["text"], "skip_bad_rows": false}, '
        '"embed": {"model": "m", "device": "cuda", "compute_dtype": "float32", "flush_rows": 2048}, '
        '"plan": [{"index": 0, "start": 0, "stop": 2}], '
        '"jobs": [{"stage": "embed", "executor": "slurm", "job_id": "7", "shards": [0]}]}'
    )
    state = runstate.load(run)
    assert state.identity.model == "m" and state.compute.device == "cuda" and state.jobs[0].task_of(0) == "7"
