"""The kit's named errors. Each message names the file, shard or rows and the next step."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class KitError(Exception):
    """Base of every error the kit raises on purpose; the CLI prints these without a traceback."""


class ConfigError(KitError):
    """A configuration value is invalid (bad option, unknown profile, run folder mismatch).

    ``repair``: Make variables that fix it (``{"MAX_SEQ_LENGTH": 512}``); the CLI prints the user's
    own command with them put over it, so the repair works as printed.
    """

    def __init__(self, message: str = "", *, repair: dict | None = None):
        super().__init__(message)
        self.repair = dict(repair or {})

    def __reduce__(self):  # keep the repair across processes (a job's result is pickled)
        return (type(self), (str(self),), {"repair": self.repair})


class CorpusError(KitError):
    """The corpus cannot be read or has rows the kit refuses to embed."""


class ModelNotFoundError(KitError):
    """The model is neither a local folder nor in the offline cache."""


class EncodeError(KitError):
    """The model produced unusable output (non-finite even in float32)."""


class ShardError(KitError):
    """A shard file is unfinished, damaged or inconsistent with the run."""


class MergeError(KitError):
    """The merge refused: shards do not tile the corpus or disagree with each other.

    ``shard`` is the shard file the error is about (where it is about one), ``redo`` the shard
    indices to recompute: callers read these, never the message.
    """

    def __init__(self, message: str = "", *, shard: Path | None = None, redo: Iterable[int] = ()):
        super().__init__(message)
        self.shard = shard
        self.redo = frozenset(redo)

    def __reduce__(self):  # keep shard and redo across processes (a job's result is pickled)
        return (type(self), (str(self),), {"shard": self.shard, "redo": self.redo})


class ShardGapError(MergeError):
    """Some rows of [0, N) are covered by no shard, or by more than one."""


class ShardMismatchError(MergeError):
    """Shards disagree on model, dimension, dtype, pooling, normalization, prompt or corpus."""


class ShardDataError(MergeError):
    """A shard holds non-finite values or all-zero rows."""


class RunBusyError(KitError):
    """The run's jobs are still alive; a second submit would race them."""


class FetchError(KitError):
    """make fetch refused or failed; the previous local file is kept."""
