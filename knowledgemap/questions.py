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


FORMAT_HINT = (
    'a JSON list of {"question": ..., "options": [...], "correctIndex": ...} objects, or one such object a '
    "line (JSONL); docs/MAP.md has an example"
)


def read_records(path: Path):
    """The file's JSON: a list as written, or a JSONL file's objects as a list; a one-line refusal otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"Cannot read questions from {path}: {err}") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as whole:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        try:
            return [json.loads(ln) for ln in lines] if lines else None
        except ValueError:
            raise ConfigError(
                f"{path} is not a questions file ({whole.msg} at line {whole.lineno}); give {FORMAT_HINT}."
            ) from None


def load_questions(path: Path) -> list[Question]:
    """A JSON list (or JSONL) of {question, options, correctIndex, topic?} (the seeds' questions.json keys)."""
    raw = read_records(path)
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
