"""Field mapping mistakes, told as such: which field is missing, what the rows have, what to add.

A text or id field that no row of a file has is a naming problem, not thousands of bad rows:
the refusal lists the fields the rows do have and the TEXT_FIELDS= / ID_FIELD= that would use
the likeliest one. It never suggests SKIP_BAD_ROWS when that would leave nothing to embed.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from pathlib import Path

from embedder.readers import Batch
from embedder.rowcheck import ROW_IDS, CorpusOptions, CorpusSummary
from kit.errors import CorpusError


TEXT_NAMES = (
    "text",
    "content",
    "contents",
    "body",
    "abstract",
    "article",
    "document",
    "passage",
    "extract",
    "summary",
    "description",
    "raw_content",
    "sentence",
    "paragraph",
)


def assignment(name: str, value: str) -> str:
    """``NAME=value`` as it would be typed after ``make submit`` (value shell-quoted)."""
    return f"{name}={shlex.quote(value)}"


def likeliest_text(fields: dict[str, float], options: CorpusOptions) -> str | None:
    """A field that probably holds the text: a usual name, else the longest text on average."""
    taken = {
        options.id_field,
        options.title_field,
        options.url_field,
        options.topic_field,
        *options.text_fields,
    }
    texts = {n: length for n, length in fields.items() if length >= 0 and n not in taken}
    for name in TEXT_NAMES:
        for field in texts:
            if field.lower() == name:
                return field
    return max(texts, key=lambda n: texts[n]) if texts else None


def likeliest_id(fields: dict[str, float]) -> str:
    """A field that probably holds ids (``doc_id``, ``_id``, ``uuid``), else ``@row``."""
    ranked = sorted((n for n in fields if re.search(r"(^|_|\b)(id|uuid|key)$", n.lower())), key=len)
    return ranked[0] if ranked else ROW_IDS


def _fields_text(fields: dict[str, float]) -> str:
    return ", ".join(f"{n} (text, ~{length:.0f} chars)" if length >= 0 else n for n, length in fields.items())


def missing_field_error(
    source: str, file: str, fields: dict[str, float], options: CorpusOptions, missing: str
) -> CorpusError:
    """The error for a corpus whose rows lack field ``missing``, with the option that likely fixes it."""
    where = f" ({Path(file).name})" if file != source else ""
    head = f"Corpus {source}{where}: no row has the field {missing!r}. The rows have: {_fields_text(fields) or 'no fields'}."
    if missing == options.id_field:
        id_guess = likeliest_id(fields)
        fix = f"Add {assignment('ID_FIELD', id_guess)} to your make submit command (--id-field {shlex.quote(id_guess)})"
        fix += "." if id_guess == ROW_IDS else ", or ID_FIELD=@row to number the rows 0, 1, ... instead."
        return CorpusError(f"{head}\n{fix}")
    guess = likeliest_text(fields, options)
    if guess is None:
        return CorpusError(f"{head}\nNone of them holds text: check that {file} is the corpus you meant.")
    value = ",".join(guess if f == missing else f for f in options.text_fields)
    return CorpusError(
        f"{head}\nTo embed {guess!r}, add {assignment('TEXT_FIELDS', value)} to your make submit "
        f"command (--text-fields {shlex.quote(value)})."
    )


def check_batch_fields(batch: Batch, options: CorpusOptions, source: str) -> None:
    """Refuse at the first batch of a file when no row of it has a text field (or the id field)."""
    wanted = [*options.text_fields, *(() if options.id_field == ROW_IDS else (options.id_field,))]
    for name in wanted:
        if batch.nones(name) == batch.rows:
            raise missing_field_error(source, batch.file, batch.fields or {}, options, name)


def check_present(
    present: Counter, options: CorpusOptions, sample: tuple[str, dict] | None, summary: CorpusSummary
) -> None:
    """After the last batch: a field no row had at all is a naming problem."""
    if summary.source_rows == 0 or sample is None:
        return
    wanted = [*options.text_fields, *(() if options.id_field == ROW_IDS else (options.id_field,))]
    for name in wanted:
        if present[name] == 0:
            raise missing_field_error(summary.source, sample[0], sample[1], options, name)


def reason_kind(reason: str) -> str:
    """The reason without its details, for counting: "line N is not valid JSON"."""
    return re.sub(r"\d+", "N", reason.split(" (")[0])


def fixes(counts: Counter, all_bad: bool) -> list[str]:
    """The next steps that fit the reasons counted."""
    lines = []
    if any(k.startswith(("missing id", "empty id")) for k in counts):
        lines.append(
            "Rows without an id: add ID_FIELD=@row to your make submit command to number the rows "
            "0, 1, ... instead, or ID_FIELD=<field> to read the ids from another field."
        )
    if "duplicate id" in counts:
        lines.append(
            "Duplicate ids: SKIP_BAD_ROWS=1 keeps the first row of each id; ID_FIELD=@row numbers "
            "the rows instead."
        )
    if all_bad:
        lines.append(
            "No row can be embedded, so SKIP_BAD_ROWS would leave nothing: check TEXT_FIELDS and "
            "ID_FIELD against the fields of the file."
        )
    else:
        lines.append(
            "Fix these rows, or add SKIP_BAD_ROWS=1 to your make submit command (--skip-bad-rows) to "
            "embed the others; every skipped row is then listed with its reason under /rejected in "
            "embeddings.h5."
        )
    return lines
