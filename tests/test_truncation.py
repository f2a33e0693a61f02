"""Truncation said out loud (issue 27, part 1): the plan counts the rows longer than the model's limit with
the model's own tokenizer, and plan, the end-of-run summary, make status and merge.json say it in one line
with the way out. Real CLI, local jobs, the real model; the truth is counted here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from tokenizers import Tokenizer

from jobs.demo import vital_articles
from kit.truncation import Truncation, sample_blocks
from tests.conftest import write_jsonl
from tests.helpers import make_cli


def long_documents(n_long: int, n_short: int) -> list[dict]:
    """``n_long`` Wikipedia-length texts (5,000 to 20,000 characters: consecutive leads joined) and
    ``n_short`` single leads, interleaved."""
    leads = list(vital_articles(n_long * 40 + n_short))
    out, k = [], 0
    for i in range(n_long):
        target, parts = 5_000 + (i * 15_000) // max(n_long - 1, 1), []
        while sum(len(p) for p in parts) < target:
            parts.append(leads[k]["text"])
            k += 1
        out.append({**leads[k], "id": f"long-{i}", "text": "\n\n".join(parts)})
        k += 1
    shorts = [{**r, "id": f"short-{j}"} for j, r in enumerate(leads[k : k + n_short])]
    mixed = []
    for i in range(max(n_long, n_short)):
        mixed += out[i : i + 1] + shorts[i : i + 1]
    return mixed


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory) -> tuple[Path, list[dict]]:
    records = long_documents(24, 16)
    return write_jsonl(tmp_path_factory.mktemp("long") / "long.jsonl", records), records


def truth(records: list[dict], model_path: Path, limit: int) -> tuple[int, float, int]:
    """(rows longer than ``limit`` tokens, share of the tokens past it, tokens the model sees)."""
    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()  # the model's tokenizer.json pads to 128
    lengths = np.array([len(e.ids) for e in tokenizer.encode_batch([r["text"] for r in records])])
    seen = np.minimum(lengths, limit)
    return int((lengths > limit).sum()), 1 - seen.sum() / lengths.sum(), int(seen.sum())


def test_plan_summary_status_and_merge_json_say_how_much_is_cut(long_corpus, model_path, tmp_path):
    corpus, records = long_corpus
    long_rows, lost, seen = truth(records, model_path, 256)
    assert long_rows == 24 and lost > 0.5  # the corpus is what the test says
    run = tmp_path / "long run"
    plan = make_cli("plan", RUN=run, CORPUS=corpus, MODEL="demo", PROFILE="local", SHARDS=2).stdout
    line = f"Truncation: 24 of 40 rows are longer than 256 tokens; {lost:.0%} of the text is not embedded."
    assert f"{line} To embed it all: PASSAGES=1" in plan, plan
    estimated = sum(int(t.replace(",", "")) for t in re.findall(r"about ([\d,]+) tokens", plan))

    out = make_cli("submit", RUN=run, WAIT=1).stdout
    assert line in out, out  # the end-of-run summary, with the shards' exact count
    assert line in make_cli("status", RUN=run).stdout
    merged = json.loads((run / "merge.json").read_text())
    assert merged["truncated_rows"] == 24 and merged["truncation"].startswith(line)
    embedded = 0
    for shard in sorted((run / "shards").glob("shard-*.h5")):
        with h5py.File(shard) as h5:
            embedded += int(h5.attrs["text_tokens"])
    assert embedded == seen  # the shards embedded what the model sees
    assert abs(estimated - embedded) <= 0.10 * embedded, (estimated, embedded)  # the plan's estimate


def test_a_large_corpus_is_counted_on_a_sample_and_the_line_says_so():
    def counted_256(
        rows: int, counted: int, long_rows: int, text_tokens: int, seen_tokens: int
    ) -> Truncation:
        return Truncation(
            rows, counted, long_rows, 256, text_tokens, seen_tokens, estimated_tokens=seen_tokens
        )

    counted = counted_256(
        rows=250_000, counted=2_000, long_rows=1_500, text_tokens=2_000_000, seen_tokens=500_000
    )
    assert counted.line() == (
        "Truncation: About 187,500 of 250,000 rows are longer than 256 tokens; about 75% of the text is not "
        "embedded (tokens counted on 2,000 of 250,000 rows). To embed it all: PASSAGES=1"
    )
    quiet = counted_256(rows=40, counted=40, long_rows=1, text_tokens=10_000, seen_tokens=9_950)
    assert (
        quiet.line()
        == "Truncation: 1 of 40 rows are longer than 256 tokens; 0.5% of the text is not embedded."
    )
    blocks = sample_blocks(250_000)
    assert sum(b - a for a, b in blocks) == 2_000 and blocks[0][0] == 0 and blocks[-1][1] == 250_000
    assert sample_blocks(40) == [(0, 40)]
