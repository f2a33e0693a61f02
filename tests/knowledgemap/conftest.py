"""Shared by the map tests: the demo's map (built once) and a real headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import cli_args, jobs_cli

QUESTIONS = Path(__file__).with_name("questions.json")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
VIEWPORT = (1400, 900)  # the size the issue looks at
DEMO_ROWS = 2000  # as make demo


@pytest.fixture(scope="session")
def demo_map(tmp_path_factory):
    """(run folder, make map's output) for the demo's 2,000 Vital Articles with the five questions."""
    run = tmp_path_factory.mktemp("demo") / "demo"
    jobs_cli(*cli_args("demo", run=run, rows=DEMO_ROWS, shards=1))
    out = jobs_cli(*cli_args("map", run=run, questions=QUESTIONS, seed=7)).stdout
    return run, out


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            raise RuntimeError(f"{path} is missing: make test-services installs chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def set_viewport(driver, scale: float = 1.0) -> None:
    """Exactly VIEWPORT CSS pixels at ``scale`` device pixels each (HiDPI when 2)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": scale, "mobile": False},
    )
