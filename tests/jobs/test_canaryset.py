"""run.json's canary: chosen once per run from the corpus, kept while the corpus is, its tolerance a setting."""

from __future__ import annotations

import json

from jobs import runstate
from kit.canary import canary_digest
from tests.helpers import cli_args, jobs_cli


def test_the_canary_is_chosen_once_at_plan_and_kept_and_its_tolerance_is_checked(
    tmp_path, vital_jsonl, model_path
):
    corpus, records = vital_jsonl(20)
    run = tmp_path / "run"
    jobs_cli(*cli_args("plan", run=run, corpus=corpus, model=model_path, profile="local", device="cpu"))
    canary = runstate.require(run).canary
    assert canary["rows"] == [0, 2, 5, 7, 10, 12, 15, 17] and canary["min_cosine"] == 0.999
    assert canary["texts"][1] == records[2]["text"] and canary["sha256"] == canary_digest(canary["texts"])
    jobs_cli(*cli_args("plan", run=run, canary_min_cosine=0.9999))
    again = json.loads((run / "run.json").read_text())["canary"]
    assert again == {**canary, "min_cosine": 0.9999}  # the texts stay; the tolerance is a setting
    bad = jobs_cli(*cli_args("plan", run=run, canary_min_cosine=1.5), check=False)
    assert bad.returncode == 2 and "CANARY_MIN_COSINE takes a cosine in (0, 1]" in bad.stderr
