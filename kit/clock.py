"""The one clock the run's records use: UTC, ISO 8601, to the second."""

from __future__ import annotations

from datetime import datetime, UTC


def now_iso() -> str:
    """The current UTC time in ISO 8601, to the second (run.json, shard attributes, job records)."""
    return datetime.now(UTC).isoformat(timespec="seconds")
