"""One identity vocabulary: what a request asks (``EmbedIdentity``) turned into what every shard records
(``kit.shardfile.ShardIdentity``), and back. Torch-free: submit, status and the map's setup use it
without loading a model.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from embedder.config import EmbedIdentity
from embedder.model import ResolvedModel
from kit.errors import ConfigError
from kit.shardfile import ShardIdentity


def encoder_identity(pinned: ShardIdentity, model: str | None = None) -> EmbedIdentity:
    """The request that rebuilds the encoder of vectors with identity ``pinned`` (its prompt as literal text).

    ``model`` points to the same weights elsewhere (a fetched run on a laptop); None keeps the recorded one.
    """
    revision = (
        pinned.model_revision if pinned.model_revision not in (None, "local") and model is None else None
    )
    return EmbedIdentity(
        model=model or pinned.model,
        model_revision=revision,
        prompt=pinned.prompt,
        normalize_embeddings=pinned.normalize_embeddings,
        max_seq_length=pinned.max_seq_length,
    )


def with_pinned(identity: EmbedIdentity, pinned: ShardIdentity | None) -> EmbedIdentity:
    """``identity`` loading exactly the prompt text and token limit run.json pinned: every shard agrees."""
    if pinned is None:
        return identity
    if pinned.prompt is not None:
        identity = replace(identity, prompt=pinned.prompt, prompt_name=None)
    if pinned.max_seq_length is not None:
        identity = replace(identity, max_seq_length=pinned.max_seq_length)
    if pinned.passage_window is not None:  # the overlap as pinned (OVERLAP's default resolved at submit)
        identity = replace(identity, passages=True, overlap=pinned.passage_overlap)
    return identity


def configured_prompt(folder: Path, identity: EmbedIdentity) -> str | None:
    """The literal prompt the model applies for ``identity`` (as ``model.prompt_text``), from its
    config_sentence_transformers.json without loading it; None where it cannot tell (an unknown name)."""
    if identity.prompt is not None:
        return identity.prompt
    try:
        config = json.loads((Path(folder) / "config_sentence_transformers.json").read_text())
    except (OSError, ValueError):
        config = {}
    prompts = config.get("prompts") or {}
    name = identity.prompt_name or config.get("default_prompt_name")
    if not name:
        return ""
    return prompts.get(name) if isinstance(prompts.get(name), str) else None


def model_max_seq_length(folder: Path) -> int | None:
    """The token limit sentence-transformers will apply (sentence_bert_config.json), without loading it."""
    try:
        return int(json.loads((Path(folder) / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def model_name(model: str, folder: Path) -> str:
    """What to call a model in summaries: a hub name as it is; a local folder by the title of its model
    card (README.md's first heading, ``all-MiniLM-L6-v2``), else by the folder's name."""
    if not Path(model).expanduser().is_dir():
        return model
    try:
        lines = (Path(folder) / "README.md").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    titles = [ln[2:].strip() for ln in lines if ln.startswith("# ") and ln[2:].strip()]
    return titles[0] if titles else Path(folder).name


def model_config(folder: Path) -> SimpleNamespace:
    """The model's transformers config.json as attributes (empty where there is none), without loading it."""
    try:
        data = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        data = {}
    return SimpleNamespace(**data) if isinstance(data, dict) else SimpleNamespace()


def pin_identity(
    identity: EmbedIdentity,
    fingerprint: str | None,
    max_seq_length: int | None,
    resolved: ResolvedModel | None = None,
) -> ShardIdentity:
    """The one converter from a request to what every shard must record (run.json's ``pinned``).

    With the ``resolved`` model folder, the revision is its commit and a prompt name becomes the
    prompt's text; without it (a run.json from before pinning) the request says what it can. The
    dimension and pooling come with the first shard. With PASSAGES=1 the window is ``max_seq_length``
    and the overlap OVERLAP's (its default resolved here).

    Raises:
        ConfigError: PASSAGES=1 where the token limit is not known, or OVERLAP outside the window.
    """
    window = None
    if identity.passages:
        if max_seq_length is None:
            raise ConfigError(
                f"PASSAGES=1: the token limit of {identity.model} is not known (its sentence_bert_config.json "
                "has no max_seq_length); pass MAX_SEQ_LENGTH= to set the window."
            )
        window = max_seq_length
    return ShardIdentity(
        model=identity.model,
        model_revision=resolved.model_revision if resolved else identity.model_revision,
        model_fingerprint=fingerprint or None,
        normalize_embeddings=identity.normalize_embeddings,
        prompt=configured_prompt(resolved.path, identity) if resolved else identity.prompt,
        max_seq_length=max_seq_length,
        passage_window=window,
        passage_overlap=identity.passage_overlap(window) if window is not None else None,
    )
