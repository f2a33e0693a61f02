"""Shared by the map tests: the demo's map (built once) and a real headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.chromium import headless_chromium
from tests.helpers import cli_args, jobs_cli, jobs_here

QUESTIONS = Path(__file__).with_name("questions.json")
DEMO_ROWS = 1000  # half of make demo's 2,000: the same map, in half the time


@pytest.fixture(scope="session")
def demo_map(tmp_path_factory):
    """(run folder, make map's output) for 1,000 of the demo's Vital Articles with the five questions."""
    run = tmp_path_factory.mktemp("demo") / "demo"
    jobs_cli(*cli_args("demo", run=run, demo_rows=DEMO_ROWS, shards=1))
    out = jobs_here(
        *cli_args("map", run=run, questions=QUESTIONS, seed=7)
    ).stdout  # make map: test_fetched_map
    return run, out


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    driver = headless_chromium(tmp_path_factory.mktemp("chromium"), console_log=True)
    yield driver
    driver.quit()
