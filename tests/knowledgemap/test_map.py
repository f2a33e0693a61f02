"""make map on the demo's Vital Articles, and the page in a real headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from knowledgemap.labels import cell_labels
from tests.helpers import jobs_cli

QUESTIONS = Path(__file__).with_name("questions.json")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def demo_map(tmp_path_factory):
    run = tmp_path_factory.mktemp("demo") / "demo"
    jobs_cli("demo", "--run", str(run), "--rows", "1000", "--shards", "1")
    out = jobs_cli("map", "--run", str(run), "--questions", str(QUESTIONS), "--seed", "7").stdout
    return run, out


def test_map_files_and_topic_neighbours_kept(demo_map):
    run, out = demo_map
    embeddings_before = (run / "embeddings.h5.sha256").read_text()
    with h5py.File(run / "map.h5") as m, h5py.File(run / "embeddings.h5") as e:
        coords = m["coords"][:]
        assert coords.shape == (1000, 2) and coords.min() >= 0 and coords.max() <= 1
        assert m["ids"].asstr()[:].tolist() == e["ids"].asstr()[:].tolist()
        assert m["questions/coords"].shape == (5, 2) and m["questions/embeddings"].shape == (5, 384)
        assert "questions" not in e  # never mixed into the article rows
        quality = json.loads(m.attrs["quality"])
        params = json.loads(m.attrs["params"])
        assert len(m["labels/text"]) >= 10
    assert params["n_neighbors"] == 15 and params["min_dist"] == 0.1 and params["metric"] == "cosine"
    assert quality["trustworthiness"] > 0.8
    assert quality["topic_agreement_map"] >= 0.8 * quality["topic_agreement_embedding"]
    assert "Topic agreement of 10 nearest neighbours: map" in out and "vs embedding" in out
    assert (run / "map.png").stat().st_size > 50_000 and (run / "map_reducer.joblib").exists()
    assert (run / "embeddings.h5.sha256").read_text() == embeddings_before
    assert jobs_cli("export-pkl", "--run", str(run)).returncode == 0
    assert (run / "wikipedia_merged.pkl").stat().st_size > 1000 * 384 * 4


def test_cell_labels_pick_the_title_nearest_each_cell_centre():
    coords = np.array([[0.1, 0.1], [0.24, 0.26], [0.2, 0.2], [0.9, 0.9], [0.8, 0.8], [0.76, 0.74], [0.5, 0.9]])
    titles = ["a", "centre-low", "b", "c", "d", "centre-high", "alone"]
    assert cell_labels(coords, titles, 2) == [(0.25, 0.25, "centre-low"), (0.75, 0.75, "centre-high")]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            raise RuntimeError(f"{path} is missing: make test-services installs chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,900", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_page_renders_hovers_quizzes_offline(demo_map, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    run, _ = demo_map
    browser.get_log("performance")  # drop what Chromium itself loaded at start (its chrome:// new-tab page)
    browser.get((run / "map.html").as_uri())
    assert browser.execute_script("return kmap.pointCount") == 1000
    assert browser.execute_script("return kmap.drawnPoints") == 1000  # every point drawn in the first view
    titles = json.loads(browser.execute_script("return JSON.stringify(D.titles)"))

    canvas = browser.find_element(By.ID, "map")
    width, height = canvas.size["width"], canvas.size["height"]
    positions = browser.execute_script("return Array.from({length: kmap.pointCount}, (_, i) => kmap.screenPosition(i))")
    target = next(i for i, (x, y) in enumerate(positions) if x > 360 and 40 < y < height - 40)
    x, y = positions[target]
    ActionChains(browser).move_to_element_with_offset(canvas, int(x - width / 2), int(y - height / 2)).perform()
    tip = browser.find_element(By.ID, "tooltip")
    hovered = browser.execute_script("return kmap.hovered")
    assert tip.is_displayed() and hovered >= 0 and tip.text.startswith(titles[hovered])

    assert browser.execute_script("return kmap.heatmapChecksum()") == 0
    browser.find_element(By.ID, "q-0").click()
    browser.find_elements(By.CSS_SELECTOR, "#qoptions button")[0].click()  # right
    first = browser.execute_script("return kmap.heatmapChecksum()")
    browser.find_element(By.ID, "q-1").click()
    browser.find_elements(By.CSS_SELECTOR, "#qoptions button")[0].click()  # wrong
    second = browser.execute_script("return kmap.heatmapChecksum()")
    assert first != 0 and second != first and browser.execute_script("return kmap.heatmapVersion") == 2
    assert browser.find_element(By.ID, "score").text == "1 of 2 right"

    browser.find_element(By.ID, "search").send_keys(titles[5][:12])
    assert "match" in browser.find_element(By.ID, "matches").text

    requests = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    sent = [m["params"] for m in requests if m["method"] == "Network.requestWillBeSent"]
    network = [p["request"]["url"] for p in sent if p["request"]["url"].startswith(("http", "ws", "ftp"))]
    ours = [p["request"]["url"] for p in sent if p.get("documentURL", "").startswith("file://")]
    assert not network, network  # nothing leaves the machine, from any document
    assert ours and all(u.startswith(("file://", "data:")) for u in ours), ours
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors and browser.execute_script("return kmap.errors") == []
