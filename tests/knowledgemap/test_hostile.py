"""Titles and quiz questions written by others reach map.html as inert text (issue 18, item 4)."""

from __future__ import annotations

import json

from tests.conftest import write_jsonl
from tests.helpers import cli_args, jobs_cli, jobs_here
from tests.fixtures.chromium import set_viewport

# Each one, if it ran, would set window.pwned; the first two also blanked the page before (the
# HTML parser left the data script early or entered its double-escaped state).
HOSTILE = [
    "</script><script>window.pwned = 1</script>",
    "<!--<script>",
    'Tag <img src=x onerror="window.pwned = 2">',
    "Line\u2028separator and\u2029paragraph",
    "Amp &amp; &lt;b&gt; <b>bold</b>",
    "</SCRIPT >",
]
ASKED = HOSTILE[:4] + [
    "Is $\\frac{1}{$ a price?"
]  # the last one failed the figure (matplotlib read it as TeX)


def test_hostile_titles_and_questions_load_draw_and_run_nothing(tmp_path, vital_jsonl, model_path, browser):
    rows = 7 * len(HOSTILE) * 2
    _, records = vital_jsonl(rows)  # the hostile strings go in every 7th record
    for k, text in enumerate(HOSTILE * 2):  # each string twice: as a title, and inside another title's text
        rec = records[k * 7]
        if k < len(HOSTILE):
            rec.update(id=f"hostile-{k}", title=text)
        else:
            rec["text"] = f"{text} {text} {rec['text']}"
    corpus = write_jsonl(tmp_path / "hostile.jsonl", records)
    questions = tmp_path / "questions.json"
    questions.write_text(
        json.dumps([{"question": q, "options": [q, "<i>no</i>"], "correctIndex": 0} for q in ASKED]),
        encoding="utf-8",
    )
    run = tmp_path / "run"
    jobs_cli(
        *cli_args("submit", run=run, profile="local", corpus=corpus, model=model_path, shards=1, wait=True)
    )
    jobs_here(*cli_args("map", run=run, questions=questions, seed=7))  # the map verb, in this process

    html = (run / "map.html").read_text(encoding="utf-8")
    data = html.split('<script id="kmap-data" type="application/json">', 1)[1].split("</script>", 1)[0]
    assert not any(c in data for c in "<>&\u2028\u2029")  # nothing in the data can touch the HTML parser
    set_viewport(browser)
    browser.get((run / "map.html").as_uri())
    assert browser.execute_script("return kmap.pointCount") == rows
    assert browser.execute_script("return kmap.drawnPoints") == rows  # every point drawn in the first view
    assert browser.execute_script("return window.pwned") is None
    assert (
        browser.execute_script("return document.querySelectorAll('img, script').length") == 2
    )  # our two scripts
    assert browser.execute_script("return [...document.querySelectorAll('b, i')].every(e => !e.textContent)")
    assert browser.execute_script("return kmap.errors") == []
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    titles = browser.execute_script("return TITLES")
    assert all(
        text.replace("\n", " ") in titles for text in HOSTILE
    )  # shown as written, character for character
    listed = browser.execute_script(
        "return [...document.querySelectorAll('#questions li')].map(li => li.textContent)"
    )
    assert listed == ASKED
    browser.execute_script("document.getElementById('q-1').click()")
    options = browser.execute_script(
        "return [...document.querySelectorAll('#qoptions button')].map(b => b.textContent)"
    )
    assert options == [HOSTILE[1], "<i>no</i>"] and browser.execute_script("return window.pwned") is None
