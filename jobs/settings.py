"""What a submit asks for, and how it meets the run that exists: identity fixed, execution free.

Only what the user set is carried (``None`` fields are "not given"), so nothing is inferred by
comparing with defaults. Identity (model, revision, weights, prompt, pooling, normalisation,
max_seq_length, and the corpus with its field mapping) is fixed once a run has computed
anything: a change is refused naming old and new values and the two ways out. Compute settings
(device, dtype, token budget, flush size, cache, profile) may change on any re-submit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from embedder.config import ComputeSettings, CorpusOptions, EmbedIdentity
from kit.commands import make_command
from kit.errors import ConfigError
from slurm.profiles import ClusterProfile

REDO_ALL = "all"
IDENTITY_FIELDS = tuple(f.name for f in fields(EmbedIdentity))
COMPUTE_FIELDS = tuple(f.name for f in fields(ComputeSettings))
CORPUS_FIELDS = tuple(f.name for f in fields(CorpusOptions))


@dataclass(frozen=True)
class StageAsk:
    """What one submit says of an optional stage (jobs/stages.py): its switch and the options given."""

    switch: Any = None  # True or a value (EXPORT=npy): asked for; False: turned off (MAP=0); None: not given
    options: dict[str, Any] = field(default_factory=dict)  # task keyword -> value, for the variables given


@dataclass(frozen=True)
class SubmitRequest:
    """``make submit`` / ``make plan`` / ``make resubmit`` as asked: only given values are set."""

    run_dir: Path
    corpus: Path | None = None  # CORPUS=
    shards: int | None = None  # SHARDS=
    profile: str | None = None  # PROFILE=
    identity: dict[str, Any] = field(default_factory=dict)  # given EmbedIdentity fields
    compute: dict[str, Any] = field(default_factory=dict)  # given ComputeSettings fields
    corpus_options: dict[str, Any] = field(default_factory=dict)  # given CorpusOptions fields
    redo: tuple[int, ...] | str = ()  # shard indices, or "all"
    wait: bool = False
    reuse: Path | None = (
        None  # REUSE=: an earlier run folder or embeddings.h5 whose unchanged rows are copied
    )
    stages: dict[str, StageAsk] = field(default_factory=dict)  # optional stages asked for, changed or dropped
    canary_min_cosine: float | None = None  # CANARY_MIN_COSINE=: the merge's canary tolerance

    @property
    def redo_all(self) -> bool:
        return self.redo == REDO_ALL


def identity_changes(old: EmbedIdentity, new: EmbedIdentity) -> dict[str, tuple[Any, Any]]:
    """Field -> (old, new) for every identity field that differs."""
    return {
        name: (getattr(old, name), getattr(new, name))
        for name in IDENTITY_FIELDS
        if getattr(old, name) != getattr(new, name)
    }


def given_identity(request: SubmitRequest, old: EmbedIdentity | None) -> EmbedIdentity:
    """The identity the request describes: the run's, with what was given put over it."""
    if old is None:
        if not request.identity.get("model"):
            raise ConfigError("No model given. Pass MODEL=<hub name or local folder>.")
        return EmbedIdentity(**request.identity)
    given = dict(request.identity)
    if "model" in given and given["model"] != old.model:
        given.setdefault("model_revision", None)  # another model: its revision is resolved anew
    return replace(old, **given)


def compute_settings(
    request: SubmitRequest, old: ComputeSettings | None, profile: ClusterProfile | None
) -> ComputeSettings:
    """Execution settings: the run's latest, then the profile's device, then what was given (always allowed)."""
    base = old or ComputeSettings()
    if profile is not None and profile.device:
        base = replace(base, device=profile.device)
    settings = replace(base, **request.compute)
    if settings.cache_dir is None and profile is not None and profile.model_cache:
        settings = replace(settings, cache_dir=profile.model_cache)
    return settings


def corpus_options(request: SubmitRequest, old: CorpusOptions | None) -> CorpusOptions:
    """The corpus options of ``request``: ``old`` (or the defaults) with the request's options applied."""
    return replace(old or CorpusOptions(), **request.corpus_options)


def describe_value(value: Any) -> str:
    """``value`` as a setting is shown to the user: tuples comma-joined, ``''`` and ``unset`` spelled out."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, str):
        return value or "''"
    return repr(value) if value is not None else "unset"


def change_refusal(run_dir: Path, what: str, changes: dict[str, tuple[Any, Any]], done: int) -> ConfigError:
    """A change of what the vectors are, on a run that has computed some: old, new, and two ways out."""
    shown = "; ".join(
        f"{name}: {describe_value(a)} -> {describe_value(b)}" for name, (a, b) in changes.items()
    )
    return ConfigError(
        f"Run {run_dir} was made with other {what} ({shown}); {done} shard(s) were computed with the old ones.\n"
        f"Either start a new run: the same command with another RUN=..., or recompute everything with the new "
        f"settings by adding REDO=all (the old shards are kept in shards/rejected/). To continue this run as it "
        f"was: {make_command('submit', RUN=run_dir)}"
    )


def parse_redo(value: str) -> tuple[int, ...] | str:
    """'3 5', '3,5', '0-9 12' or 'all'."""
    text = value.strip()
    if text.lower() == REDO_ALL:
        return REDO_ALL
    out: list[int] = []
    try:
        for part in text.replace(",", " ").split():
            lo, _, hi = part.partition("-")
            out += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        raise ConfigError(
            f"REDO takes shard numbers like '3 5', ranges like '0-9', or 'all'; got {value!r}."
        ) from None
    return tuple(out)


def cosine(value: str) -> float:
    """CANARY_MIN_COSINE= as given: a cosine in (0, 1]."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number <= 1:
        raise ConfigError(f"CANARY_MIN_COSINE takes a cosine in (0, 1], e.g. 0.999; got {value!r}.")
    return number


def reuse_path(given: str | None) -> Path | None:
    """REUSE= as given: an earlier run folder or its embeddings.h5 (verified at plan)."""
    return Path(given).expanduser().resolve() if given else None
