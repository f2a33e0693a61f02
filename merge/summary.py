"""What a merge wrote: one ``MergeSummary``, saved as merge.json beside embeddings.h5 and read back.

Kept out of embeddings.h5 so that re-merging the same shards still writes the same bytes (the
merge's duration and time differ each time). A folder without merge.json (a fetched run, or one
merged by an older kit), or whose merge.json describes another file than the sidecar names, gets
its summary from embeddings.h5 and the sidecar, with the duration unknown (None).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


from kit import atomic
from kit.format import MERGE_SUMMARY_FORMAT, RunPaths, parse_sidecar
from kit.h5files import open_h5


@dataclass(frozen=True)
class MergeSummary:
    path: Path  # embeddings.h5
    rows: int
    dim: int
    sha256: str  # of embeddings.h5, as its sidecar says
    quality: dict  # norm statistics (embeddings.h5's quality_metrics)
    rejected_rows: int  # input rows left out of the corpus
    seconds: float | None  # how long the merge took; None when unknown (read from the file alone)
    truncated_rows: int | None = None  # rows longer than max_seq_length, as the shards counted them
    truncation: str | None = None  # the line that says it, with the plan's share of the text not embedded

    def to_json(self) -> str:
        """The summary as JSON text with its format tag, newline-terminated."""
        return (
            json.dumps({"format": MERGE_SUMMARY_FORMAT, **asdict(self), "path": str(self.path)}, indent=2)
            + "\n"
        )

    def save(self, run_dir: Path) -> None:
        """Write the summary into ``run_dir``, atomically."""
        atomic.write_text(RunPaths.of(run_dir).merge_summary, self.to_json())


def read_summary(run_dir: Path) -> MergeSummary:
    """The summary of the run's embeddings.h5: merge.json where it describes that file, else the file itself.

    Raises:
        OSError: there is no embeddings.h5 or no sidecar.
    """
    paths = RunPaths.of(run_dir)
    sha256 = parse_sidecar(paths.output_sidecar.read_text())[0]
    try:
        data = json.loads(paths.merge_summary.read_text())
        if data.pop("format", None) == MERGE_SUMMARY_FORMAT and data["sha256"] == sha256:
            return MergeSummary(**{**data, "path": paths.output})
    except (OSError, ValueError, KeyError, TypeError):
        pass
    with open_h5(paths.output) as h5:
        rows, dim = h5["embeddings"].shape
        return MergeSummary(
            paths.output,
            int(rows),
            int(dim),
            sha256,
            json.loads(h5.attrs["quality_metrics"]),
            int(h5.attrs["rejected_rows"]),
            None,
        )
