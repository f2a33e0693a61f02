"""Shared by the search tests: what make fetch brings of a real run, a real run of a model with a query
prompt, and synthetic files in the merged layout for sizes the model would take too long to embed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from jobs.demo import vital_articles
from kit import atomic
from kit.format import OUTPUT_FORMAT, UTF8
from kit.h5files import open_h5
from kit.shardfile import ShardIdentity
from tests.conftest import write_jsonl
from tests.helpers import cli_args, jobs_cli

QUESTIONS = [
    "Which river flows through Cairo?",
    "Who painted the Mona Lisa?",
    "What is the largest planet in the solar system?",
    "How do vaccines work?",
]
QUERY_PROMPTS = {"query": "query: ", "document": "passage: "}


def fetched_copy(run: Path, dest: Path) -> Path:
    """``dest`` holding only embeddings.h5 and its sidecar of ``run``: what make fetch brings."""
    dest.mkdir(parents=True)
    for name in ("embeddings.h5", "embeddings.h5.sha256"):
        shutil.copy2(run / name, dest / name)
    return dest


@pytest.fixture
def fetched(merged_run, tmp_path) -> Path:
    """A laptop's folder after make fetch of the shared real run (40 Vital Articles, all-MiniLM-L6-v2)."""
    return fetched_copy(merged_run, tmp_path / "laptop")


def random_prompt_model(folder: Path, tokenizer_from: Path) -> Path:
    """A randomly initialised 32-d BERT sentence-transformer saving ``QUERY_PROMPTS`` (seed 0)."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    raw = folder / "raw"
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    word = models.Transformer(str(raw), max_seq_length=64)
    pooling = models.Pooling(32, "mean")
    model = SentenceTransformer(modules=[word, pooling], prompts=QUERY_PROMPTS, device="cpu")
    model.save(str(folder / "model"))
    return folder / "model"


@pytest.fixture(scope="session")
def prompt_run(tmp_path_factory, model_path) -> tuple[Path, Path]:
    """(run folder, model folder): 20 Vital Articles embedded through the real CLI with a random model
    whose config saves a query and a document prompt, embedded with PROMPT_NAME=document."""
    root = tmp_path_factory.mktemp("prompted")
    model = random_prompt_model(root, model_path)
    corpus = write_jsonl(root / "vital.jsonl", list(vital_articles(20)))
    run = root / "run"
    options = dict(run=run, corpus=corpus, model=model, prompt_name="document", profile="local")
    jobs_cli(*cli_args("submit", **options, device="cpu", shards=1, wait=True))
    return run, model


def write_merged_file(path: Path, vectors: np.ndarray, quality: bool = True) -> str:
    """An embeddings.h5 in the merge's layout holding ``vectors`` [N, D], with its sidecar; its SHA-256.

    ``quality``: record norm statistics (as the merge does); without them the rows count as not unit.
    """
    rows, dim = vectors.shape
    tmp = atomic.tmp_path(path)
    names = np.array([f"doc-{i}" for i in range(rows)], dtype=object)
    with open_h5(tmp, "w") as h5:
        h5.create_dataset("embeddings", data=vectors.astype(np.float32))
        for field, prefix in (("ids", ""), ("titles", "Title "), ("urls", "https://example.org/")):
            h5.create_dataset(field, data=np.array([prefix + n for n in names], dtype=object), dtype=UTF8)
        identity = ShardIdentity(model="synthetic/test", model_fingerprint="0" * 64, dim=dim, prompt="")
        h5.attrs.update(format=OUTPUT_FORMAT, embedding_dim=dim, **identity.to_attrs("provenance_"))
        if quality:
            norms = np.linalg.norm(vectors, axis=1)
            h5.attrs["quality_metrics"] = json.dumps(
                {"min_norm": float(norms.min()), "max_norm": float(norms.max())}
            )
    return atomic.commit_with_sidecar(tmp, path)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force_top(file_vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows [Q, k], cosines [Q, k]) by float64 cosine, ties by ascending row: the test's own reference."""
    a = file_vectors.astype(np.float64)
    q = queries.astype(np.float64)
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (a / np.linalg.norm(a, axis=1, keepdims=True)).T
    order = np.array([np.lexsort((np.arange(len(a)), -c))[:k] for c in cos])
    return order, np.take_along_axis(cos, order, axis=1)


def rewrite_with_sidecar(path: Path, change) -> None:
    """Change embeddings.h5 in place with ``change(h5)`` and write its new sidecar: a re-merge, in effect."""
    with open_h5(path, "a") as h5:
        change(h5)
    atomic.write_text(path.with_name(path.name + ".sha256"), f"{atomic.sha256_file(path)}  {path.name}\n")
