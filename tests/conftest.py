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


@pytest.fixture(scope="session")
def model_path() -> Path:
    return demo_model_path()


@pytest.fixture(scope="session")
def st_model(model_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path), device="cpu", local_files_only=True)


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
