"""map.html in a real headless Chromium: the demo's page, HiDPI, and a 250,000-point page."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.map_synthetic import known_levels, landscape
from knowledgemap.figure import PALETTE
from knowledgemap.page import page_data, write_page
from knowledgemap.placement import MIN_POINTS, overlaps
from tests.fixtures.chromium import VIEWPORT, set_viewport
from tests.knowledgemap.conftest import DEMO_ROWS


def _open(browser, path, scale: float = 1.0) -> None:
    set_viewport(browser, scale)
    browser.get_log("performance")  # drop what Chromium itself loaded at start (its chrome:// new-tab page)
    browser.get(path.as_uri())


def _assert_offline_and_clean(browser) -> None:
    requests = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    sent = [m["params"] for m in requests if m["method"] == "Network.requestWillBeSent"]
    network = [p["request"]["url"] for p in sent if p["request"]["url"].startswith(("http", "ws", "ftp"))]
    ours = [p["request"]["url"] for p in sent if p.get("documentURL", "").startswith("file://")]
    assert not network, network  # nothing leaves the machine, from any document
    assert ours and all(u.startswith(("file://", "data:")) for u in ours), ours
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors and browser.execute_script("return kmap.errors") == []


def _hover_some_point(browser):
    """Move the real mouse onto a point right of the panel; returns (hovered index, tooltip text)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = browser.find_element(By.ID, "map")
    positions = browser.execute_script(
        "return Array.from({length: Math.min(kmap.pointCount, 5000)}, (_, i) => kmap.screenPosition(i))"
    )
    x, y = next((x, y) for x, y in positions if x > 400 and 60 < y < VIEWPORT[1] - 60)
    ActionChains(browser).move_to_element_with_offset(
        canvas, int(x - VIEWPORT[0] / 2), int(y - VIEWPORT[1] / 2)
    ).perform()
    return browser.execute_script("return kmap.hovered"), browser.find_element(By.ID, "tooltip").text


def _assert_labels_apart_and_on_ground(browser) -> list[dict]:
    labels, needed = browser.execute_script("return [kmap.placedLabels, kmap.minPoints()]")
    assert needed >= 2 and needed <= MIN_POINTS  # MIN_POINTS in the full view, fewer (at least 2) zoomed in
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            assert not overlaps(a["box"], b["box"]), (a["text"], b["text"])
        if not a["beside"]:  # a name set beside its island touches it; every other name sits on points
            under = browser.execute_script("return kmap.pointsUnder(...arguments[0])", a["mapBox"])
            assert under >= needed, (a["text"], under)
    return labels


def _searched_titles(run, question: int) -> list[str]:
    """The titles make search prints for the map's question ``question`` (run as a user would)."""
    import h5py

    from tests.helpers import make_cli

    with h5py.File(run / "map.h5") as m:
        text = m["questions/text"].asstr()[question]
    out = make_cli("search", RUN=run, QUERY=text, K=10).stdout.splitlines()[2:]
    return [ln.split(None, 2)[2].split("  https://")[0] for ln in out]


def test_demo_page_labels_hover_quiz_search_offline(demo_map, browser):
    from selenium.webdriver.common.by import By

    run, _ = demo_map
    _open(browser, run / "map.html")
    assert browser.execute_script("return kmap.pointCount") == DEMO_ROWS
    assert (
        browser.execute_script("return kmap.drawnPoints") == DEMO_ROWS
    )  # every point drawn in the first view
    level = json.loads(browser.execute_script("return JSON.stringify(D.levels)"))
    coarse_names = {n.replace("\n", " ") for n in level[0]["labels"]}
    asked = {level[k]["names"][r] for k, r in browser.execute_script("return D.lead")}
    labels = _assert_labels_apart_and_on_ground(browser)
    # the first view names coarse regions, and the questions' neighbourhoods
    assert labels and all(
        lab["text"] in coarse_names if lab["level"] == "coarse" else lab["text"] in asked for lab in labels
    )
    assert browser.execute_script("return kmap.minPoints()") == MIN_POINTS
    # zoomed in on the largest neighbourhood: the finer names appear
    browser.execute_script("const f = LEVELS[1], [x, y] = f.anchors[f.order[0]][0]; kmap.zoomTo(x, y, 3)")
    assert any(lab["level"] == "fine" for lab in _assert_labels_apart_and_on_ground(browser))
    browser.execute_script("kmap.resetView()")

    titles = browser.execute_script("return TITLES")
    hovered, tip = _hover_some_point(browser)
    region = browser.execute_script("return regionsOf(arguments[0])", hovered)
    assert hovered >= 0 and tip.startswith(titles[hovered]) and region and region in tip

    assert browser.execute_script("return kmap.heatmapChecksum()") == 0
    browser.find_element(By.ID, "q-0").click()
    # the question lists the articles make search finds for it, and rings them on the map
    listed = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#qnearest li")]
    assert [t.rsplit(" (", 1)[0] for t in listed] == _searched_titles(run, 0), listed
    assert browser.execute_script("return kmap.highlighted") == len(listed) == 10
    browser.find_elements(By.CSS_SELECTOR, "#qoptions button")[0].click()  # right
    first = browser.execute_script("return kmap.heatmapChecksum()")
    browser.find_element(By.ID, "q-1").click()
    browser.find_elements(By.CSS_SELECTOR, "#qoptions button")[0].click()  # wrong
    assert browser.execute_script("return kmap.heatmapChecksum()") != first != 0
    assert browser.find_element(By.ID, "score").text == "1 of 2 right"
    q = browser.execute_script("return D.questions[0]")
    assert browser.execute_script("return kmap.heatAlphaAt(arguments[0], arguments[1])", q["x"], q["y"]) > 0.2
    assert browser.execute_script("return kmap.heatAlphaAt(-0.04, -0.04)") < 0.05  # none outside the map

    browser.find_element(By.ID, "search").send_keys(titles[5][:12])
    assert "match" in browser.find_element(By.ID, "matches").text
    assert browser.execute_script("return kmap.highlighted") >= 1
    _assert_offline_and_clean(browser)


def test_demo_page_is_sharp_on_hidpi(demo_map, browser):
    _open(browser, demo_map[0] / "map.html", scale=2)
    width, ratio, css = browser.execute_script(
        "const c = document.getElementById('map'); return [c.width, devicePixelRatio, c.clientWidth]"
    )
    assert ratio == 2 and width == 2 * css == 2 * VIEWPORT[0]  # one canvas pixel per device pixel
    assert browser.execute_script("return kmap.drawnPoints") == DEMO_ROWS
    set_viewport(browser, 1)


@pytest.fixture(scope="module")
def big_page(tmp_path_factory):
    """A 250,000-point page from synthetic coordinates, through the page writer (no UMAP)."""
    coords, coarse, fine, titles = landscape(250_000)
    levels = known_levels(coords, coarse, fine)
    questions = [
        {
            "text": f"Question {k}?",
            "options": ["yes", "no"],
            "correct": 0,
            "x": float(coords[k * 4999, 0]),
            "y": float(coords[k * 4999, 1]),
        }
        for k in range(10)
    ]
    path = tmp_path_factory.mktemp("big") / "map.html"
    colouring = (coarse.astype(np.int64), levels[0].names, PALETTE, "region")
    write_page(path, page_data(coords, titles, colouring, levels, questions, "synthetic"))
    return path


def test_250k_page_draws_everything_pans_and_hovers(big_page, browser):
    """What the page does at 250,000 points; how fast is bench/map_page_speed.py (a figure, not a verdict)."""
    _open(browser, big_page)
    assert browser.execute_script("return kmap.readyMs") > 0  # the first frame was drawn
    assert browser.execute_script("return kmap.drawnPoints") == 250_000
    frames = browser.execute_async_script(
        "kmap.measureFrames(60).then(arguments[0])"
    )  # a scripted pan and zoom
    assert len(frames["draws"]) == 60 and browser.execute_script("return kmap.drawnPoints") > 0
    browser.execute_script("kmap.resetView()")
    hovered, tip = _hover_some_point(browser)
    assert hovered >= 0 and tip.startswith(browser.execute_script("return TITLES[arguments[0]]", hovered))
    _assert_labels_apart_and_on_ground(browser)
    _assert_offline_and_clean(browser)
