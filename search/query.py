"""Encode questions as the run's documents were encoded, with the model's query prompt.

The encoder is rebuilt from embeddings.h5 alone (its ``provenance_*`` attributes, through
``embedder.identity.encoder_identity``): the same model and revision, the same token limit and
normalisation, and the weights' SHA-256 checked against the one recorded at submit. Only the
prompt differs: a model that saves a ``query`` prompt (``prompts`` in its
config_sentence_transformers.json: EmbeddingGemma, Qwen3-Embedding, e5 and bge variants) gets
it; any other model gets the run's own prompt. ``QueryEncoder.prompt`` says which.

The model is loaded once per process (``load_query_encoder`` keeps it), so a second question
costs the encoding and the search alone.

>>> encoder = load_query_encoder("runs/demo/embeddings.h5")
>>> encoder.prompt.describe()   # "no prompt (the model defines no query prompt, and the run's rows had none)"
>>> vectors = encoder.encode(["Which river flows through Cairo?"])   # float32 [1, 384]
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from embedder.config import ComputeSettings, EmbedIdentity
from embedder.encode import TextEncoder
from embedder.identity import configured_prompt, encoder_identity
from embedder.loader import load_encoder
from embedder.model import resolve_model, weights_fingerprint
from kit.commands import make_command
from kit.errors import ConfigError, ModelNotFoundError
from kit.shardfile import ShardIdentity
from search.vectors import file_identity

QUERY_PROMPT = "query"  # the key sentence-transformers models use for their query prompt


@dataclass(frozen=True)
class QueryPrompt:
    """The prompt questions are encoded with."""

    name: str  # "query": the model's query prompt; "document": the run's own prompt
    text: str  # the literal text prepended to each question ("" for none)

    def describe(self) -> str:
        """``the model's query prompt 'query: '``, or the run's document prompt and why."""
        if self.name == QUERY_PROMPT:
            return f"the model's query prompt {self.text!r}"
        if not self.text:
            return "no prompt (the model defines no query prompt, and the run's rows had none)"
        return f"the run's document prompt {self.text!r} (the model defines no query prompt)"


def choose_prompt(query_prompt: str | None, run_prompt: str | None) -> QueryPrompt:
    """The model's query prompt where it saves one (``query_prompt`` not None), else the run's prompt."""
    if query_prompt is not None:
        return QueryPrompt(QUERY_PROMPT, query_prompt)
    return QueryPrompt("document", run_prompt or "")


def saved_query_prompt(folder: Path) -> str | None:
    """The ``query`` prompt the model in ``folder`` saves in its sentence-transformers config, or None.

    Read from the config, not from the loaded model: sentence-transformers fills in an empty
    ``query`` prompt for every model, which would hide a run's own prompt (``PROMPT=``).
    """
    return configured_prompt(folder, EmbedIdentity(model=str(folder), prompt_name=QUERY_PROMPT))


@dataclass
class QueryEncoder:
    """Questions -> float32 vectors comparable with a run's rows."""

    identity: ShardIdentity  # what embeddings.h5 records (``provenance_*``)
    prompt: QueryPrompt
    fingerprint_checked: bool  # False only for files that record no weights fingerprint
    text_encoder: TextEncoder

    @property
    def dim(self) -> int:
        return self.text_encoder.dim

    def encode(self, texts: list[str]) -> np.ndarray:
        """Float32 [len(texts), dim]: row i encodes ``prompt.text + texts[i]``."""
        return self.text_encoder.encode(list(texts))


def load_query_encoder(
    path: str | Path, model: str | None = None, compute: ComputeSettings | None = None
) -> QueryEncoder:
    """The query encoder of the vectors in ``path``, loaded once per process and identity.

    Args:
        path: embeddings.h5, or a file that copies its ``provenance_*`` attributes.
        model: the same weights at another place (a folder or hub name); None uses the recorded one.
        compute: device and dtype; None: float32 on the best device here.

    Raises:
        ModelNotFoundError: the model is not here; the message names ``MODEL=`` to point to it.
        ConfigError: the weights here are not those the run was embedded with, or another dimension.
    """
    compute = compute or replace(ComputeSettings(), compute_dtype="float32")
    identity = file_identity(path)
    try:
        return _load(identity, model, compute)
    except ModelNotFoundError as err:
        raise ModelNotFoundError(
            f"Questions are encoded with the run's model, {identity.model!r} (named in {path}), which "
            f"is not available here: {str(err).splitlines()[0]} Point to the same model with "
            f"{make_command('search', RUN=Path(path).parent, MODEL='<folder or hub name>')}"
        ) from err
    except _WrongWeights as err:
        fix = make_command("search", RUN=Path(path).parent, MODEL="<folder of the run's weights>")
        raise ConfigError(f"{path}: {err} Run: {fix}") from err


class _WrongWeights(Exception):
    pass


@functools.lru_cache(maxsize=4)
def _load(identity: ShardIdentity, model: str | None, compute: ComputeSettings) -> QueryEncoder:
    """Load, check and wrap the encoder (cached: the key is what decides the vectors)."""
    request = encoder_identity(identity, model)
    folder = resolve_model(request, compute.cache_dir).path
    checked = _check_fingerprint(folder, identity)
    loaded = load_encoder(request, compute)
    if identity.dim is not None and loaded.encoder.dim != identity.dim:
        raise _WrongWeights(
            f"the model gives {loaded.encoder.dim}-d vectors, the file holds {identity.dim}-d."
        )
    prompt = choose_prompt(saved_query_prompt(folder), identity.prompt)
    text_encoder = loaded.encoder
    if prompt.text != text_encoder.prompt:
        text_encoder = TextEncoder(
            loaded.model,
            prompt=prompt.text,
            normalize=request.normalize_embeddings,
            max_tokens=loaded.encoder.max_tokens,
        )
    return QueryEncoder(identity, prompt, checked, text_encoder)


def _check_fingerprint(folder: Path, identity: ShardIdentity) -> bool:
    """True when the weights in ``folder`` hash to the recorded fingerprint; False when none is recorded."""
    if not identity.model_fingerprint:
        return False
    here = weights_fingerprint(folder)
    if here != identity.model_fingerprint:
        raise _WrongWeights(
            f"the model at {folder} has weights with SHA-256 {here[:12]}..., but the run was embedded "
            f"with {identity.model_fingerprint[:12]}...: its questions would not match the vectors."
        )
    return True
