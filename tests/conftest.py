"""Shared fixtures: the real small model, the real Vital Articles corpus, synthetic runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may download here
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from jobs.demo import demo_model_path, vital_articles  # noqa: E402


# Under `pytest -n` (make test's host lane): the modules whose tests read one costly session fixture, in one
# worker together so it is built once (demo_map: make demo and its map, about two minutes).
SHARED_WORKER = {
    "tests/knowledgemap/test_map.py": "demo_map",
    "tests/knowledgemap/test_page.py": "demo_map",
}


def pytest_xdist_make_scheduler(config, log):
    """Each module's tests in one worker (their module fixtures are built once), the SHARED_WORKER modules in
    one together. pytest 9 ignores the node-id suffix that xdist's own ``--dist loadgroup`` relies on."""
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SHARED_WORKER.get(module, module)

    return ByModule(config, log)


@pytest.fixture(autouse=True)
def gpu_claims_stay_in_their_test():
    """An embed task run in-process sets CUDA_VISIBLE_DEVICES from SLURM_*_GPUS, as it must in a job; here
    it would reach every later test's jobs (a GPU held that torch cannot use): put back as it was."""
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    yield
    if before is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = before


@pytest.fixture(scope="session")
def model_path() -> Path:
    return demo_model_path()


@pytest.fixture(scope="session")
def st_model(model_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path), device="cpu", local_files_only=True)


@pytest.fixture(scope="session")
def merged_run(tmp_path_factory, model_path) -> Path:
    """One finished run made through the real CLI (the real model, local submitit jobs, the merge): 40
    Vital Articles in 2 shards. Shared by every test that only reads a finished run; a test that
    changes one takes ``copied_run``."""
    from tests.helpers import cli_args, jobs_cli

    root = tmp_path_factory.mktemp("merged")
    corpus = write_jsonl(root / "vital.jsonl", list(vital_articles(MERGED_ROWS)))
    run = root / "run"
    out = jobs_cli(
        *cli_args(
            "submit",
            run=run,
            corpus=corpus,
            model=model_path,
            profile="local",
            device="cpu",
            shards=2,
            wait=True,
        )
    ).stdout
    (root / SUBMIT_OUTPUT).write_text(out)
    return run


SUBMIT_OUTPUT = "submit.out"  # beside merged_run: what its make submit WAIT=1 printed


def merged_output(run: Path) -> str:
    """What the submit that made ``merged_run`` printed."""
    return (run.parent / SUBMIT_OUTPUT).read_text()


def merged_records() -> list[dict]:
    """The corpus of ``merged_run``."""
    return list(vital_articles(MERGED_ROWS))


MERGED_ROWS = 40


@pytest.fixture
def copied_run(merged_run, tmp_path) -> Path:
    """A copy of ``merged_run`` (file times kept) that the test may change."""
    return copy_run(merged_run, tmp_path / "run")


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of the run folder ``run`` at ``dest``, file times kept (as ``cp -a``)."""
    import shutil

    return Path(shutil.copytree(run, dest, symlinks=True))


def write_jsonl(path: Path, records) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


@pytest.fixture
def vital_jsonl(tmp_path):
    """Write ``n`` Vital Articles to a JSONL corpus; returns (path, records)."""

    def make(n: int, name: str = "vital.jsonl"):
        records = list(vital_articles(n))
        return write_jsonl(tmp_path / name, records), records

    return make


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
