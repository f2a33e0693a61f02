"""run.json: the run's configuration, plan and job ids, written atomically."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from embedder.config import EmbedConfig, ShardSpec
from kit import atomic
from kit.errors import ConfigError
from kit.format import MANIFEST

RUN_FORMAT = "embedkit-run/1"


@dataclass
class Manifest:
    """Everything about a run that is not in its shard files."""

    embed: EmbedConfig
    plan: list[ShardSpec]
    corpus: dict  # source, rows, source_rows, fingerprint, text_fields, skip_bad_rows
    created_at: str
    jobs: list[dict] = field(default_factory=list)  # {"stage", "executor", "job_id", "host", "shards", ...}

    def to_json(self) -> str:
        return json.dumps({"format": RUN_FORMAT, "created_at": self.created_at, "corpus": self.corpus,
                           "embed": asdict(self.embed), "plan": [asdict(s) for s in self.plan],
                           "jobs": self.jobs}, indent=2) + "\n"


def manifest_path(run_dir: Path) -> Path:
    return Path(run_dir) / MANIFEST


def load(run_dir: Path) -> Manifest | None:
    """The run's manifest, or None for a new run folder."""
    path = manifest_path(run_dir)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Manifest(embed=EmbedConfig(**data["embed"]), plan=[ShardSpec(**s) for s in data["plan"]],
                        corpus=data["corpus"], created_at=data["created_at"], jobs=data.get("jobs", []))
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path} is not a readable run manifest ({err}). Use a new RUN folder.") from err


def save(run_dir: Path, manifest: Manifest) -> None:
    atomic.write_text(manifest_path(run_dir), manifest.to_json())
