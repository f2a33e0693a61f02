"""Find a model offline, pick a device, load it, and describe what was loaded."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from embedder.config import EmbedConfig
from kit.errors import ModelNotFoundError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


@dataclass(frozen=True)
class ResolvedModel:
    """A model folder on disk and what identifies it."""

    path: Path
    name: str  # as the user gave it
    revision: str  # hub commit of the cached snapshot, or "local" for a folder


def hub_cache_dir(cache_dir: str | None) -> Path:
    """Where the hub cache lives (``cache_dir``, else HF_HUB_CACHE / HF_HOME's hub folder)."""
    from huggingface_hub import constants

    return Path(cache_dir or constants.HF_HUB_CACHE)


def resolve_model(config: EmbedConfig) -> ResolvedModel:
    """A local folder as is; a hub name from the offline cache only (never downloads).

    Raises:
        ModelNotFoundError: naming the cache path and the command that stages the model.
    """
    local = Path(config.model).expanduser()
    if local.is_dir():
        return ResolvedModel(local.resolve(), config.model, "local")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(
            config.model, revision=config.revision, cache_dir=config.cache_dir, local_files_only=True
        )
    except Exception as err:  # huggingface_hub raises several types for "not cached"
        raise ModelNotFoundError(
            f"Model {config.model!r} is neither a local folder nor in the offline cache at "
            f"{hub_cache_dir(config.cache_dir)} ({type(err).__name__}). Compute tasks never download. "
            "Download it once into that cache where there is network: python -c \"from huggingface_hub "
            f"import snapshot_download; snapshot_download('{config.model}')\", or pass a local folder."
        ) from err
    return ResolvedModel(Path(path), config.model, Path(path).name)


def weights_fingerprint(folder: Path) -> str:
    """SHA-256 over the names and bytes of the weight files: identifies the exact weights."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not files:
        raise ModelNotFoundError(f"No weight files ({', '.join(WEIGHT_SUFFIXES)}) under {folder}.")
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as f:
            while block := f.read(8 << 20):
                digest.update(block)
    return digest.hexdigest()


def pick_device(requested: str) -> str:
    """``auto``: CUDA, then MPS, then CPU."""
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_model(resolved: ResolvedModel, config: EmbedConfig, device: str, dtype: str):
    """A SentenceTransformer on ``device`` with weights in ``dtype``, loaded offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: a compute task never reaches a hub
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(
        str(resolved.path), device=device, local_files_only=True,
        model_kwargs={"dtype": getattr(torch, dtype)},
    )
    if config.max_seq_length:
        model.max_seq_length = config.max_seq_length
    if config.prompt_name and config.prompt_name not in model.prompts:
        raise ModelNotFoundError(
            f"Model {resolved.name!r} defines no prompt {config.prompt_name!r}; it has: "
            f"{', '.join(model.prompts) or 'none'}. Pass PROMPT_NAME= one of those, or PROMPT='...'."
        )
    return model


def pooling_description(model) -> str:
    """The pooling and normalisation modules of ``model``, as text (shards must agree on it)."""
    return " | ".join(type(m).__name__ + (f"({m.get_config_dict()})" if hasattr(m, "get_config_dict") else "")
                      for m in list(model)[1:])


def prompt_text(model, config: EmbedConfig) -> str:
    """The literal prompt prepended to every text ("" for none)."""
    if config.prompt is not None:
        return config.prompt
    if config.prompt_name:
        return model.prompts[config.prompt_name]
    return model.prompts.get(model.default_prompt_name, "") if model.default_prompt_name else ""
