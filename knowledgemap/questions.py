"""Quiz questions: read and validate the JSON file (the caller embeds them with the run's model)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kit.errors import ConfigError


@dataclass(frozen=True)
class Question:
    text: str
    options: tuple[str, ...]
    correct: int  # index into options
    topic: str = ""


def load_questions(path: Path) -> list[Question]:
    """A JSON list of {question, options, correctIndex, topic?} (the seeds' questions.json keys)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"Cannot read questions from {path}: {err}") from err
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path} must hold a non-empty JSON list of questions.")
    return [_question(path, i, q) for i, q in enumerate(raw)]


KEYS = ("question", "options", "correctIndex")  # required, in the order the file gives them


def _question(path: Path, i: int, q) -> Question:
    """Question ``i`` of the file, or a ConfigError naming the key that is missing or wrong."""
    if not isinstance(q, dict):
        raise ConfigError(
            f"{path}: question {i} is {type(q).__name__} {str(q)[:60]!r}, not an object with keys "
            f"{', '.join(KEYS)}."
        )
    missing = [k for k in KEYS if k not in q and not (k == "correctIndex" and "correct" in q)]
    if missing:
        raise ConfigError(
            f"{path}: question {i} has no {' or '.join(repr(k) for k in missing)} key "
            f"(it has {', '.join(repr(k) for k in q) or 'none'}); each question needs "
            f"{', '.join(KEYS)} (topic optional)."
        )
    text, options, correct = q["question"], q["options"], q.get("correctIndex", q.get("correct"))
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{path}: question {i} has no 'question' text.")
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
        raise ConfigError(f"{path}: question {i} needs 'options', a list of at least two strings.")
    if isinstance(correct, bool) or not isinstance(correct, int) or not 0 <= correct < len(options):
        raise ConfigError(
            f"{path}: question {i} has 'correctIndex' {correct!r}, not an index into its "
            f"{len(options)} options (0 to {len(options) - 1})."
        )
    return Question(text, tuple(options), correct, str(q.get("topic", "")))
