"""kit/format.py: the run folder's names (RunPaths), shard names and the sha256 sidecar, on real files."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from kit import atomic
from kit.format import (
    RunPaths,
    content_hash,
    content_hashes,
    parse_sidecar,
    shard_index,
    shard_name,
    sidecar_path,
    sidecar_text,
)
from tests.helpers import REPO

FORMAT_DOC = REPO / "docs" / "FORMAT.md"


def _every_file(paths: RunPaths) -> dict[str, Path]:
    """Every property of RunPaths (the per-shard and per-source ones at an example argument)."""
    named = {
        name: getattr(paths, name) for name, value in vars(RunPaths).items() if isinstance(value, property)
    }
    return {**named, "shard(3)": paths.shard(3), "converted_source(ab12)": paths.converted_source("ab12")}


def test_run_paths_name_each_file_once_inside_the_run_folder(tmp_path):
    run = tmp_path / "lab runs" / "wiki é"
    paths = RunPaths.of(str(run))
    assert paths.root == run and RunPaths.of(paths) is paths  # a RunPaths passes through unchanged
    files = _every_file(paths)
    assert len(files) >= 17 and len(set(files.values())) == len(files), files  # no two names for one file
    for name, path in files.items():
        assert path.is_relative_to(run), (name, path)
    assert paths.shard(3) == run / "shards" / "shard-00003.h5"
    assert paths.output_sidecar == run / "embeddings.h5.sha256" and paths.controller_log.parent == paths.logs
    with pytest.raises(dataclasses.FrozenInstanceError):
        paths.root = tmp_path  # a run's paths cannot be re-pointed


def test_every_run_file_is_documented_in_format_md(tmp_path):
    """The module promises docs/FORMAT.md lists the run folder: each name RunPaths gives appears there."""
    doc = FORMAT_DOC.read_text(encoding="utf-8")
    paths = RunPaths(tmp_path)
    for name, path in _every_file(paths).items():
        relative = path.relative_to(tmp_path).as_posix()
        shown = re.sub(r"ab12", "<token>", relative)
        assert shown in doc or Path(relative).name in doc, (name, relative)


@pytest.mark.parametrize("index", [0, 7, 99_999, 123_456])
def test_shard_names_sort_and_read_back(index):
    name = shard_name(index)
    assert shard_index(Path("shards") / name) == index
    assert name.startswith("shard-") and len(name) >= len("shard-00000.h5")
    names = [shard_name(i) for i in (2, 10, 100, 1000)]
    assert sorted(names) == names  # zero-padded: a directory listing is in shard order


@pytest.mark.parametrize(
    "other",
    [
        "shard-7.h5",
        "shard-00007.h5.tmp",
        "shard-00007.h5.sha256",
        "embeddings.h5",
        "shard-0000a.h5",
        "xshard-00007.h5",
    ],
)
def test_other_names_are_no_shard(other):
    assert shard_index(Path(other)) is None


def test_sidecar_is_what_sha256sum_checks(tmp_path):
    data = tmp_path / "my file é.h5"
    data.write_bytes(b"\x00embedkit\n" * 1000)
    atomic.write_text(sidecar_path(data), sidecar_text(atomic.sha256_file(data), data))
    assert sidecar_path(data).name == "my file é.h5.sha256"
    digest, name = parse_sidecar(sidecar_path(data).read_text(encoding="utf-8"))
    assert name == data.name and digest == atomic.sha256_file(data)
    ok = subprocess.run(
        ["sha256sum", "-c", sidecar_path(data).name], cwd=tmp_path, capture_output=True, text=True
    )
    assert ok.returncode == 0 and ok.stdout.strip().endswith(": OK"), ok.stdout + ok.stderr
    with data.open("r+b") as f:  # one byte changed: the same sidecar now fails
        f.write(b"\x01")
    bad = subprocess.run(
        ["sha256sum", "-c", sidecar_path(data).name], cwd=tmp_path, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "FAILED" in bad.stdout


@pytest.mark.parametrize(
    "line", ["", "abc  file.h5", "0" * 64, "0" * 64 + " file.h5", "0" * 63 + "  file.h5"]
)
def test_a_line_that_is_not_sha256sum_output_is_refused(line):
    with pytest.raises(ValueError, match="not a sha256sum line"):
        parse_sidecar(line)


def test_content_hash_is_16_bytes_per_exact_text():
    texts = [b"Paris", b"Paris ", "Pâris".encode(), b""]
    hashes = content_hashes(texts)
    assert hashes == [content_hash(t) for t in texts] and all(len(h) == 16 for h in hashes)
    assert len(set(hashes)) == len(texts)  # one trailing space, one accent: another row
    assert content_hash(memoryview(b"Paris")) == hashes[0]  # a view of the same bytes hashes the same
