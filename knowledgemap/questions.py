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
    out = []
    for i, q in enumerate(raw):
        text, options, correct = q.get("question"), q.get("options"), q.get("correctIndex", q.get("correct"))
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{path}: question {i} has no 'question' text.")
        if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
            raise ConfigError(f"{path}: question {i} needs 'options', a list of at least two strings.")
        if not isinstance(correct, int) or not 0 <= correct < len(options):
            raise ConfigError(f"{path}: question {i} has 'correctIndex' {correct!r}, not an index into its options.")
        out.append(Question(text, tuple(options), correct, str(q.get("topic", ""))))
    return out

