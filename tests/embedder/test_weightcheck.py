"""A damaged weight file is refused at submit, naming the file and make stage-model; a whole one passes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from embedder.weightcheck import check_weights, weight_problems
from kit.errors import ConfigError
from tests.conftest import write_jsonl
from tests.helpers import cli_args, jobs_cli


def model_copy(source: Path, dest: Path, keep_bytes: int | None = None) -> Path:
    """The model folder with links to its files, and model.safetensors copied (cut to ``keep_bytes``)."""
    dest.mkdir(parents=True)
    for item in source.iterdir():
        if item.name != "model.safetensors":
            (dest / item.name).symlink_to(item)
    data = (source / "model.safetensors").read_bytes()
    (dest / "model.safetensors").write_bytes(data if keep_bytes is None else data[:keep_bytes])
    return dest


def test_the_real_model_passes(model_path):
    assert weight_problems(model_path) == []


@pytest.mark.parametrize("keep", [3, 100, 5000, -1])
def test_a_cut_safetensors_file_is_named(tmp_path, model_path, keep):
    size = (model_path / "model.safetensors").stat().st_size
    folder = model_copy(model_path, tmp_path / "m", keep if keep > 0 else size - 1)
    problems = weight_problems(folder)
    assert [p for p, _ in problems] == [folder / "model.safetensors"], problems


def test_a_cut_torch_archive_is_named(tmp_path):
    with zipfile.ZipFile(tmp_path / "pytorch_model.bin", "w") as z:
        z.writestr("archive/data.pkl", b"x" * 10000)
    data = (tmp_path / "pytorch_model.bin").read_bytes()
    (tmp_path / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match=r"pytorch_model.bin is damaged: its zip archive does not open"):
        check_weights(tmp_path, "org/model")


def test_hub_model_refusal_removes_the_blob_then_stages(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(json.dumps({}).encode()[:1])
    with pytest.raises(ConfigError) as err:
        check_weights(tmp_path, "sentence-transformers/all-MiniLM-L6-v2", "discovery")
    assert (
        f"rm {tmp_path / 'model.safetensors'} && make stage-model "
        "MODEL=sentence-transformers/all-MiniLM-L6-v2 PROFILE=discovery"
    ) in str(err.value)


def test_submit_refuses_a_truncated_weight_file_and_queues_nothing(tmp_path, model_path):
    folder = model_copy(model_path, tmp_path / "cut model", 1 << 20)
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "title": "A", "url": "", "text": "alpha"}])
    run = tmp_path / "run"
    proc = jobs_cli(*cli_args("submit", run=run, profile="local", corpus=corpus, model=folder), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"weight file {folder / 'model.safetensors'} is damaged: its header describes" in proc.stderr
    assert "but the file holds 1,048,576 bytes" in proc.stderr and "make stage-model" in proc.stderr
    assert not (run / "run.json").exists() and not (run / "logs").exists()
