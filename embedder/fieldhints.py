"""Field mapping mistakes, told as such: the whole mapping the rows' columns suggest, in one refusal.

A text or id field that no row of a file has is a naming problem, not thousands of bad rows; so
is a title or url field that no row has while another column plainly holds titles or urls (they
would come out empty without a word). The refusal lists the fields the rows do have and proposes
the whole field mapping at once (text, id, title, url, topic), as the Make variables that give it:
the CLI prints the user's own command with them put over it (``FieldMappingError.repair``). A CSV
whose header line is one field holding a separator also gets ``CSV_DELIMITER=``. It never suggests
SKIP_BAD_ROWS when that would leave nothing to embed.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from embedder.readers import Batch
from embedder.readers.delimited import DELIMITERS, delimiter_name
from embedder.readers.textio import base_name
from embedder.rowcheck import ROW_IDS, CorpusOptions, CorpusSummary
from kit.errors import CorpusError

NO_FIELD = "-"  # TITLE_FIELD=- / URL_FIELD=-: the corpus has none; they stay empty and none is proposed
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
TITLE_NAMES = ("title", "name", "headline", "heading", "subject", "page_title", "article_title", "caption")
URL_NAMES = ("url", "link", "href", "uri", "permalink", "source_url", "page_url", "website")
TOPIC_NAMES = ("topic", "category", "categories", "section", "label", "genre", "tag", "tags", "class")
SUFFIXES = {"title": ("_title",), "url": ("_url", "_link", "_uri"), "topic": ("_topic", "_category")}
# CorpusOptions field -> (the Make variable, what the field gives), in the order a proposal names them
ROLES = {
    "text_fields": ("TEXT_FIELDS", "text"),
    "id_field": ("ID_FIELD", "id"),
    "title_field": ("TITLE_FIELD", "title"),
    "url_field": ("URL_FIELD", "url"),
    "topic_field": ("TOPIC_FIELD", "topic"),
    "csv_delimiter": ("CSV_DELIMITER", "separator"),
}
FIX_PATTERN = re.compile(r"^To use it, add (.+?) to your make [a-z-]+ command", re.M)


class FieldMappingError(CorpusError):
    """The rows' fields do not fit the field options.

    ``repair``: the Make variables of the proposed mapping (``{"TEXT_FIELDS": "body", ...}``); the CLI
    prints the user's own command with them put over it. Rebuilt from the message when the error is
    raised again with its wording changed (``make plan`` says "your make plan command").
    """

    def __init__(self, message: str = "", *, repair: dict[str, str] | None = None):
        super().__init__(message)
        self.repair = dict(repair) if repair is not None else repair_from_message(message)

    def __reduce__(self):  # keep the repair across processes
        return (type(self), (str(self),), {"repair": self.repair})


def repair_from_message(message: str) -> dict[str, str]:
    """The ``NAME=value`` assignments of a refusal's "add ... to your make submit command", as a dict."""
    found = FIX_PATTERN.search(message)
    try:
        words = shlex.split(found.group(1)) if found else []
    except ValueError:  # not a line this module wrote
        return {}
    return dict(w.split("=", 1) for w in words if re.fullmatch(r"[A-Z_]+=.*", w, re.S))


def assignment(name: str, value: str) -> str:
    """``NAME=value`` as it would be typed after ``make submit`` (value shell-quoted)."""
    return f"{name}={shlex.quote(value)}"


# ---------------------------------------------------------------- which column gives which field


def _texts(fields: dict[str, float], taken: set[str]) -> list[str]:
    """Text columns not ``taken``, likeliest first: a usual text name, else the longest text."""
    texts = {n: length for n, length in fields.items() if length >= 0 and n not in taken}
    usual = [f for name in TEXT_NAMES for f in texts if f.lower() == name]
    return usual + sorted((f for f in texts if f not in usual), key=lambda f: -texts[f])


def likeliest_text(fields: dict[str, float], options: CorpusOptions) -> str | None:
    """A field that probably holds the text: a usual name, else the longest text on average.

    Columns that look like titles, urls or topics are taken only when no other holds text.
    """
    taken = {options.id_field, options.title_field, options.url_field, options.topic_field}
    taken |= set(options.text_fields)
    labels = {f for f in fields if _named(f, (*TITLE_NAMES, *URL_NAMES, *TOPIC_NAMES), ())}
    ranked = _texts(fields, taken | labels) or _texts(fields, taken)
    return ranked[0] if ranked else None


def likeliest_id(fields: dict[str, float]) -> str:
    """A field that probably holds ids (``doc_id``, ``_id``, ``uuid``), else ``@row``."""
    ranked = sorted((n for n in fields if re.search(r"(^|_|\b)(id|uuid|key)$", n.lower())), key=len)
    return ranked[0] if ranked else ROW_IDS


def _named(field: str, names: tuple[str, ...], suffixes: tuple[str, ...]) -> bool:
    low = field.lower()
    return low in names or low.endswith(suffixes)


def _column(fields: dict[str, float], current: str, role: str, taken: set[str]) -> str:
    """The column for a title, url or topic: ``current`` where the rows have it, else a likely one."""
    if current in fields or current == NO_FIELD:
        return current
    names = {"title": TITLE_NAMES, "url": URL_NAMES, "topic": TOPIC_NAMES}[role]
    texts = [f for f, length in fields.items() if length >= 0 and f not in taken]
    for name in names:
        for field in texts:
            if field.lower() == name:
                return field
    suffixed = [f for f in texts if _named(f, (), SUFFIXES[role])]
    return suffixed[0] if suffixed else current


def propose(fields: dict[str, float], options: CorpusOptions) -> dict[str, object]:
    """The whole field mapping the rows' ``fields`` (name -> mean text length) suggest: CorpusOptions field -> value.

    A field keeps its option where the rows have it; otherwise the likeliest column (the text a usual
    name or the longest text, the id a name ending in id, titles and urls their usual names). A title,
    url or topic no column gives keeps its option (it reads as ""); text fields no column gives are
    left out, so ``text_fields`` may come back empty.
    """
    ids = options.id_field
    if ids != ROW_IDS and ids not in fields:
        ids = likeliest_id({f: n for f, n in fields.items() if f not in options.text_fields})
    texts: list[str] = []
    for name in options.text_fields:
        if name in fields:
            texts.append(name)
        elif guess := likeliest_text(fields, _with(options, ids, texts)):
            texts.append(guess)
    title = _column(fields, options.title_field, "title", {ids})
    url = _column(fields, options.url_field, "url", {ids, *texts, title})
    topic = _column(fields, options.topic_field, "topic", {ids, *texts, title, url})
    return {
        "text_fields": tuple(texts),
        "id_field": ids,
        "title_field": title,
        "url_field": url,
        "topic_field": topic,
    }


def _with(options: CorpusOptions, ids: str, texts: list[str]) -> CorpusOptions:
    """``options`` with the id and the text fields chosen so far (what the next text guess must avoid)."""
    return replace(options, id_field=ids, text_fields=(*options.text_fields, *texts))


# ---------------------------------------------------------------- the refusal


def _fields_text(fields: dict[str, float]) -> str:
    return ", ".join(f"{n} (text, ~{length:.0f} chars)" if length >= 0 else n for n, length in fields.items())


def _value_text(value: object) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


def _changes(mapping: dict[str, object], options: CorpusOptions) -> dict[str, str]:
    """Make variable -> value for every field of ``mapping`` that differs from ``options``."""
    return {
        ROLES[key][0]: _value_text(value)
        for key, value in mapping.items()
        if value != getattr(options, key) and value != ()
    }


def _mapping_line(mapping: dict[str, object], fields: dict[str, float]) -> str:
    """``text <- body, id <- doc_id, title <- name, url: none, topic <- category`` (as the rows would be read)."""
    parts = []
    for key, value in mapping.items():
        role = ROLES[key][1]
        if key == "csv_delimiter":
            parts.append(f"{role} {delimiter_name(str(value))!r}")
        elif key == "id_field" and value == ROW_IDS:
            parts.append("id <- the row number (@row)")
        elif isinstance(value, str) and value not in fields:
            parts.append(f"{role}: none")
        else:
            parts.append(f"{role} <- {' + '.join(value) if isinstance(value, tuple) else value}")
    return ", ".join(parts)


def _fix_line(changes: dict[str, str], mapping: dict[str, object]) -> str:
    """``To use it, add A=1 B=2 to your make submit command (--a 1 --b 2).`` with the ways out."""
    made = " ".join(assignment(k, v) for k, v in changes.items())
    flags = " ".join(f"--{k.lower().replace('_', '-')} {shlex.quote(v)}" for k, v in changes.items())
    line = f"To use it, add {made} to your make submit command ({flags})."
    if "ID_FIELD" in changes:
        line += (
            " No column looks like an id: ID_FIELD=@row numbers the rows 0, 1, ..."
            if mapping["id_field"] == ROW_IDS
            else " Or ID_FIELD=@row to number the rows 0, 1, ... instead."
        )
    labels = [key for key in ("TITLE_FIELD", "URL_FIELD") if key in changes]
    if labels:
        given = " and ".join(f"{key}={NO_FIELD}" for key in labels)
        line += f" Where the rows have no {' or '.join(ROLES[k.lower()][1] + 's' for k in labels)}: {given}."
    return line


def _missing_text(missing: list[str], options: CorpusOptions) -> str:
    """``the field 'text' (TEXT_FIELDS)`` / ``the fields 'text' (TEXT_FIELDS) or 'id' (ID_FIELD)``."""
    variable = {
        options.id_field: "ID_FIELD",
        options.title_field: "TITLE_FIELD",
        options.url_field: "URL_FIELD",
    }
    named = [f"{m!r} ({variable.get(m, 'TEXT_FIELDS')})" for m in missing]
    which = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " or " + named[-1]
    return f"the field{'s' if len(named) > 1 else ''} {which}"


def mapping_error(
    source: str, file: str, fields: dict[str, float], options: CorpusOptions, missing: list[str]
) -> FieldMappingError:
    """The refusal of a corpus whose rows lack ``missing`` fields, proposing the whole mapping at once.

    Args:
        source: the corpus as given (CORPUS=).
        file: the file whose rows were looked at.
        fields: the fields its rows have -> their mean text length (-1: not text).
        options: the field options asked for.
        missing: the asked fields no row has (text and id fields; a title or url field that
            another column could give).

    Returns:
        The error; its ``repair`` holds the Make variables of the proposed mapping.
    """
    where = f" ({Path(file).name})" if file != source else ""
    labels = {options.title_field, options.url_field} - set(_wanted(options))
    empty = ', so every one would read as ""' if set(missing) <= labels else ""
    head = (
        f"Corpus {source}{where}: no row has {_missing_text(missing, options)}{empty}. "
        f"The rows have: {_fields_text(fields) or 'no fields'}."
    )
    split = _split_header(fields, options) if base_name(Path(file)).endswith((".csv", ".tsv")) else None
    if split is not None:
        fields, mapping = split
    else:
        mapping = propose(fields, options)
    if not mapping["text_fields"]:
        return FieldMappingError(
            f"{head}\nNone of them holds text: check that {file} is the corpus you meant."
        )
    changes = _changes(mapping, options)
    lines = [
        head,
        f"Field mapping from these fields: {_mapping_line(mapping, fields)}.",
        _fix_line(changes, mapping),
    ]
    return FieldMappingError("\n".join(lines), repair=changes)


def _split_header(fields: dict[str, float], options: CorpusOptions) -> tuple[dict[str, float], dict] | None:
    """A CSV header read as one field that a separator splits: its fields, and the mapping with CSV_DELIMITER."""
    if len(fields) != 1:
        return None
    [header] = fields
    for delimiter in DELIMITERS:
        names = header.split(delimiter)
        if len(names) > 1 and delimiter != options.csv_delimiter:
            split = {name.strip().strip('"'): 0.0 for name in names}
            return split, {**propose(split, options), "csv_delimiter": delimiter}
    return None


# ---------------------------------------------------------------- the checks prepare makes


def _wanted(options: CorpusOptions) -> list[str]:
    """Fields every row must have: the text fields and the id field."""
    return [*options.text_fields, *(() if options.id_field == ROW_IDS else (options.id_field,))]


def _unmapped_labels(fields: dict[str, float], options: CorpusOptions, absent: Iterable[str]) -> list[str]:
    """The title or url field no row has, where another column looks like one (it would read as "")."""
    mapping = propose(fields, options)
    return [
        getattr(options, key)
        for key in ("title_field", "url_field")
        if getattr(options, key) in absent and mapping[key] != getattr(options, key)
    ]


def check_batch_fields(batch: Batch, options: CorpusOptions, source: str, labels: bool = True) -> None:
    """Refuse at the first batch of a file when no row of it has a text or id field (or, with ``labels``,
    the title or url field while another column looks like one)."""
    fields = batch.fields or {}
    missing = [name for name in _wanted(options) if batch.nones(name) == batch.rows]
    if labels:
        absent = [n for n in (options.title_field, options.url_field) if batch.nones(n) == batch.rows]
        missing += _unmapped_labels(fields, options, absent)
    if missing:
        raise mapping_error(source, batch.file, fields, options, list(dict.fromkeys(missing)))


def check_present(
    present: Counter, options: CorpusOptions, sample: tuple[str, dict] | None, summary: CorpusSummary
) -> None:
    """After the last batch: a field no row had at all is a naming problem."""
    if summary.source_rows == 0 or sample is None:
        return
    missing = [name for name in _wanted(options) if present[name] == 0]
    absent = [n for n in (options.title_field, options.url_field) if present[n] == 0]
    missing += _unmapped_labels(sample[1], options, absent)
    if missing:
        raise mapping_error(summary.source, sample[0], sample[1], options, list(dict.fromkeys(missing)))


# ---------------------------------------------------------------- bad rows


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
