"""How much of the corpus the model will not see: rows longer than ``max_seq_length``, counted at plan.

The plan tokenises the rows (all of them up to ``SAMPLE_ROWS``, else evenly spread blocks of them)
with the model's own tokenizer, the run's prompt in front as the task will put it, and counts the
rows that are longer than the model's limit and the share of the corpus's tokens past it. The same
counts calibrate the plan's token estimate (``kit.corpusfile.row_costs`` guesses from characters)
to what the model will actually see. Torch-free: the Rust tokenizer of the model folder's
``tokenizer.json``, no model load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.corpusfile import CorpusReader

SAMPLE_ROWS = 2000  # rows tokenised at plan: every row of a smaller corpus
SAMPLE_BLOCKS = 20  # a larger corpus: this many evenly spread blocks of rows (one read each)
QUIET_SHARE = 0.03  # under this share of the text lost, the report is one quiet line


@dataclass(frozen=True)
class Truncation:
    """What the plan counted: recorded in run.json, reported by plan, status, the summary and merge.json."""

    rows: int  # rows of the corpus
    counted: int  # rows tokenised (all of them, or a sample)
    long_rows: int  # of the counted rows, those longer than max_seq_length (the tail is not embedded)
    max_seq_length: int
    text_tokens: int  # tokens of the counted rows, whole (the prompt and special tokens included)
    seen_tokens: int  # of those, the tokens the model sees (each row cut at max_seq_length)
    estimated_tokens: int  # the character-based estimate of the counted rows (kit.corpusfile.row_costs)

    @property
    def sampled(self) -> bool:
        return self.counted < self.rows

    @property
    def long_share(self) -> float:
        return self.long_rows / max(self.counted, 1)

    @property
    def lost_share(self) -> float:
        """The share of the corpus's tokens past ``max_seq_length``: not embedded."""
        return 1.0 - self.seen_tokens / max(self.text_tokens, 1)

    @property
    def calibration(self) -> float:
        """Tokens the model sees per estimated token: scales the plan's estimate to what is embedded."""
        return self.seen_tokens / max(self.estimated_tokens, 1)

    def line(self, passages: bool = False, long_rows: int | None = None) -> str:
        """One line: how many rows are cut and how much text is lost, and the way out (PASSAGES=1).

        ``long_rows``: the exact count where the shards know it (the merge); else the plan's count.
        """
        exact = long_rows is not None or not self.sampled
        if long_rows is None:
            long_rows = self.long_rows if not self.sampled else round(self.long_share * self.rows)
        where = f" (tokens counted on {self.counted:,} of {self.rows:,} rows)" if self.sampled else ""
        if passages:
            return (
                f"Passages: every row is embedded whole, in windows of {self.max_seq_length} tokens{where}."
            )
        if long_rows == 0:
            return f"Truncation: no row is longer than {self.max_seq_length} tokens{where}."
        head = f"{'' if exact else 'About '}{long_rows:,} of {self.rows:,} rows are longer than"
        lost = f"{self.lost_share:.0%}" if self.lost_share >= 0.01 else f"{self.lost_share:.1%}"
        lost = f"about {lost}" if self.sampled else lost
        line = f"Truncation: {head} {self.max_seq_length} tokens; {lost} of the text is not embedded{where}."
        return line if self.lost_share < QUIET_SHARE else f"{line} To embed it all: PASSAGES=1"

    def to_json(self) -> dict[str, Any]:
        """run.json's ``truncation``."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Truncation | None:
        """The counts run.json recorded, or None."""
        return cls(**data) if data else None


def sample_blocks(rows: int, size: int = SAMPLE_ROWS, blocks: int = SAMPLE_BLOCKS) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` to count: all rows up to ``size``, else ``blocks`` evenly spread ones."""
    if rows <= size:
        return [(0, rows)] if rows else []
    per = size // blocks
    starts = np.linspace(0, rows - per, blocks).astype(np.int64)
    return [(int(s), int(s) + per) for s in starts]


def tokenizer_of(model_folder: Path):
    """The model's fast tokenizer (``tokenizer.json``) without truncation or padding; None where it has none."""
    path = Path(model_folder) / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def count(
    corpus: Path, model_folder: Path, prompt: str, max_seq_length: int, estimate: np.ndarray
) -> Truncation | None:
    """Tokenise the counted rows of ``corpus`` as the task will (prompt first, special tokens added).

    Args:
        corpus: the run's corpus.h5. model_folder: the resolved model. prompt: the literal prompt.
        max_seq_length: the model's limit. estimate: the plan's token estimate of every row.

    Returns:
        The counts, or None where the model has no tokenizer.json (a slow tokenizer: not counted).
    """
    tokenizer = tokenizer_of(model_folder)
    if tokenizer is None:
        return None
    lengths, estimated = [], 0.0
    with CorpusReader(corpus) as reader:
        for start, stop in sample_blocks(reader.rows):
            texts = reader.read(start, stop, ("texts",))["texts"]
            encoded = tokenizer.encode_batch([prompt + t for t in texts])
            lengths.append(np.fromiter((len(e.ids) for e in encoded), dtype=np.int64, count=len(texts)))
            estimated += float(estimate[start:stop].sum())
        rows = reader.rows
    full = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    return Truncation(
        rows=rows,
        counted=len(full),
        long_rows=int((full > max_seq_length).sum()),
        max_seq_length=max_seq_length,
        text_tokens=int(full.sum()),
        seen_tokens=int(np.minimum(full, max_seq_length).sum()),
        estimated_tokens=int(round(estimated)),
    )
