"""RunConfig: one run's settings from the command line, reconciled with an existing run.json."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

from embedder.config import EmbedConfig
from embedder.corpus import CorpusOptions
from jobs.manifest import Manifest
from kit.errors import ConfigError

@dataclass(frozen=True)
class RunConfig:
    """What ``make submit`` was asked to do."""

    run_dir: Path  # the run folder: run.json, corpus.h5, shards/, logs/, embeddings.h5
    corpus: Path | None  # source corpus; None when the run folder already has corpus.h5
    shards: int  # number of contiguous shards (array tasks)
    embed: EmbedConfig
    corpus_options: CorpusOptions
    profile: str | None = None  # slurm/profiles/<name>.toml, a .toml path, or "local"; None: see submit
    timeout_min: int = 7 * 24 * 60  # wall-clock limit of one local task


def reconcile(config: RunConfig, manifest: Manifest | None) -> RunConfig:
    """A re-submit of an existing run keeps its embedding settings; a conflicting one is refused.

    Only the fields the user set (non-default) are compared, so ``make submit RUN=...`` alone
    continues a run as it was created.
    """
    if manifest is None:
        return config
    defaults = EmbedConfig(model=manifest.embed.model)
    changed = {f.name: getattr(config.embed, f.name) for f in fields(EmbedConfig)
               if getattr(config.embed, f.name) != getattr(defaults, f.name)
               and getattr(config.embed, f.name) != getattr(manifest.embed, f.name)}
    if config.embed.model and config.embed.model != manifest.embed.model:
        changed["model"] = config.embed.model
    if changed:
        shown = ", ".join(f"{k}={v!r} (run has {getattr(manifest.embed, k)!r})" for k, v in changed.items())
        raise ConfigError(f"Run {config.run_dir} was created with other settings: {shown}. "
                          "Use a new RUN folder, or drop these options to continue the run as it was.")
    if config.shards != len(manifest.plan) and config.shards > 0:
        raise ConfigError(f"Run {config.run_dir} was planned with {len(manifest.plan)} shards, not "
                          f"{config.shards}. Use a new RUN folder, or drop SHARDS to continue.")
    return replace(config, embed=manifest.embed, shards=len(manifest.plan))
