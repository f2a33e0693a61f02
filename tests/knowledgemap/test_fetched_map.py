"""make map on what make fetch brings (embeddings.h5 and its sidecar, no run.json, no corpus.h5): the
questions are embedded with the run's encoder, rebuilt from the file's attributes alone."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from jobs import runstate
from kit.shardfile import ShardIdentity, read_header, shard_path
from knowledgemap.questions import load_questions
from tests.conftest import MERGED_ROWS
from tests.helpers import REPO, cli_args, jobs_here
from tests.knowledgemap.conftest import QUESTIONS

ROWS = MERGED_ROWS


def make_map(run: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "map", f"RUN={run}", f"QUESTIONS={QUESTIONS}", "SEED=7", *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def cluster_run(merged_run) -> Path:
    """A real run (make submit's path: run.json pins the identity, the tasks write the shards)."""
    return merged_run


@pytest.fixture(scope="module")
def fetched(cluster_run, tmp_path_factory) -> Path:
    """A folder holding only embeddings.h5 and embeddings.h5.sha256 of a real demo run."""
    run = cluster_run
    laptop = tmp_path_factory.mktemp("laptop") / "demo"
    laptop.mkdir()
    for name in ("embeddings.h5", "embeddings.h5.sha256"):
        shutil.copy2(run / name, laptop / name)
    return laptop


def test_make_map_on_a_fetched_folder_embeds_the_questions_with_the_runs_model(fetched, st_model):
    done = make_map(fetched)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and f"open {fetched / 'map.html'}" in done.stdout
    texts = [q.text for q in load_questions(QUESTIONS)]
    with h5py.File(fetched / "map.h5") as m:
        q_emb, q_xy = m["questions/embeddings"][:], m["questions/coords"][:]
        assert m["coords"].shape == (ROWS, 2)
    assert q_emb.shape == (len(texts), 384) and np.isfinite(q_xy).all()
    expected = st_model.encode(texts, convert_to_numpy=True)  # the demo model: no prompt, its own Normalize
    np.testing.assert_allclose(q_emb, expected, atol=1e-5)
    assert sorted(p.name for p in fetched.iterdir() if not p.name.startswith("map")) == [
        "embeddings.h5",
        "embeddings.h5.sha256",
    ]  # nothing else was needed or written


def test_a_model_that_is_not_here_is_named_with_how_to_point_to_it(fetched, tmp_path, model_path):
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("embeddings.h5", "embeddings.h5.sha256"):
        shutil.copy2(fetched / name, moved / name)
    gone = "/cluster/home/someone/models/all-MiniLM-L6-v2"
    with h5py.File(moved / "embeddings.h5", "a") as h5:  # as written on a cluster whose folders are not here
        h5.attrs["model"] = h5.attrs["provenance_model"] = gone
    refused = make_map(moved)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert gone in refused.stderr and "MODEL='<folder or hub name>'" in refused.stderr, refused.stderr
    assert not (moved / "map.h5").exists()
    pointed = jobs_here(*cli_args("map", run=moved, questions=QUESTIONS, seed=7, model=model_path))
    assert pointed.returncode == 0, (
        pointed.stdout + pointed.stderr
    )  # make passes MODEL= as for plan (test_first_hour)
    with h5py.File(moved / "map.h5") as m:
        assert m["questions/embeddings"].shape == (5, 384)


def test_one_identity_from_submit_to_shard_to_merged_file(cluster_run):
    pinned = runstate.require(cluster_run).pinned
    shard = read_header(shard_path(cluster_run, 0)).identity
    with h5py.File(cluster_run / "embeddings.h5") as h5:
        merged = ShardIdentity.from_attrs(h5.attrs, prefix="provenance_")
    assert pinned is not None and pinned.prompt == "" and pinned.max_seq_length == 256
    assert len(pinned.model_fingerprint or "") == 64 and pinned.dim is None  # dim comes with the model
    assert pinned.differences(shard) == {} and shard == merged and shard.dim == 384
