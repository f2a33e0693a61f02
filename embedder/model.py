"""Find a model offline, pick a device, load it, and describe what was loaded."""

from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from embedder.config import EmbedIdentity
from kit.errors import ModelNotFoundError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
OFFLINE_HINT = "the all-MiniLM-L6-v2 shipped with the kit, which works offline"


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


def looks_like_a_path(model: str) -> bool:
    """True for names only a folder can have: absolute, ``~``, ``./``, ``../``, or under an existing folder.

    Hub names look like ``org/name``; a local typo must not be diagnosed as a hub download.
    """
    if model.startswith(("/", "~", "./", "../")):
        return True
    parent = Path(model).expanduser().parent
    return str(parent) not in ("", ".") and parent.is_dir()


def resolve_model(identity: EmbedIdentity, cache_dir: str | None = None, profile: str | None = None) -> ResolvedModel:
    """A local folder as is; a hub name from the offline cache only (never downloads).

    Raises:
        ModelNotFoundError: naming the folder or the cache path, and the command that stages the model.
    """
    local = Path(identity.model).expanduser()
    if local.is_dir():
        return ResolvedModel(local.resolve(), identity.model, "local")
    if looks_like_a_path(identity.model):
        raise ModelNotFoundError(f"Model folder {local} does not exist. Check MODEL= (a local folder, a hub name "
                                 f"staged with make stage-model, or MODEL=demo: {OFFLINE_HINT}).")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(identity.model, revision=identity.revision, cache_dir=cache_dir,
                                 local_files_only=True)
    except Exception as err:  # huggingface_hub raises several types for "not cached"
        from kit.commands import make_command

        stage = make_command("stage-model", MODEL=identity.model, REVISION=identity.revision, PROFILE=profile)
        close = difflib.get_close_matches(identity.model, cached_models(cache_dir), n=1, cutoff=0.8)
        fix = (f"Did you mean MODEL={close[0]} (in the cache)?" if close else
               f"If the name is right (https://huggingface.co/{identity.model}), stage it once on the login node "
               f"(with network): {stage}")
        raise ModelNotFoundError(
            f"Model {identity.model!r}{'@' + identity.revision if identity.revision else ''} is not in the "
            f"offline cache at {hub_cache_dir(cache_dir)} ({type(err).__name__}); compute tasks never download.\n"
            f"{fix}\nTo try the kit offline: MODEL=demo ({OFFLINE_HINT})."
        ) from err
    return ResolvedModel(Path(path), identity.model, Path(path).name)


def cached_models(cache_dir: str | None) -> list[str]:
    """Hub names with a snapshot in the cache (``models--org--name`` folders)."""
    root = hub_cache_dir(cache_dir)
    if not root.is_dir():
        return []
    found = (p for p in root.glob("models--*") if (p / "snapshots").is_dir())
    return sorted(p.name[len("models--"):].replace("--", "/") for p in found)


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


# ATTENTION= values and the transformers attn_implementation each loads (None: the model's own).
ATTN_IMPLEMENTATIONS = {"sdpa": "sdpa", "eager": "eager", "flash": "flash_attention_2"}


def load_model(resolved: ResolvedModel, identity: EmbedIdentity, device: str, dtype: str,
               attention: str | None = None):
    """A SentenceTransformer on ``device`` with weights in ``dtype``, loaded offline.

    ``attention`` picks the attention back-end; None keeps the model's own choice (PyTorch SDPA
    where the architecture supports it). ``flash`` also packs batches without padding
    (sentence-transformers does so when a varlen flash kernel is importable).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: a compute task never reaches a hub
    import torch
    from sentence_transformers import SentenceTransformer

    model_kwargs = {"dtype": getattr(torch, dtype)}
    if attention:
        model_kwargs["attn_implementation"] = ATTN_IMPLEMENTATIONS[attention]
    model = SentenceTransformer(str(resolved.path), device=device, local_files_only=True, model_kwargs=model_kwargs)
    if identity.max_seq_length:
        model.max_seq_length = identity.max_seq_length
    if identity.prompt_name and identity.prompt_name not in model.prompts:
        raise ModelNotFoundError(
            f"Model {resolved.name!r} defines no prompt {identity.prompt_name!r}; it has: "
            f"{', '.join(model.prompts) or 'none'}. Pass PROMPT_NAME= one of those, or PROMPT='...'."
        )
    return model


def attention_description(model) -> str:
    """The attention back-end the model runs (``sdpa``, ``eager``, ``flash_attention_2``), ``+packed``
    when batches are flattened without padding."""
    first = model[0]
    config = getattr(getattr(first, "model", None), "config", None)
    name = str(getattr(config, "_attn_implementation", None) or "unknown")
    return name + ("+packed" if getattr(first, "can_flatten_inputs", False) else "")


def pooling_description(model) -> str:
    """The pooling and normalisation modules of ``model``, as text (shards must agree on it)."""
    return " | ".join(type(m).__name__ + (f"({m.get_config_dict()})" if hasattr(m, "get_config_dict") else "")
                      for m in list(model)[1:])


def prompt_text(model, identity: EmbedIdentity) -> str:
    """The literal prompt prepended to every text ("" for none)."""
    if identity.prompt is not None:
        return identity.prompt
    if identity.prompt_name:
        return model.prompts[identity.prompt_name]
    return model.prompts.get(model.default_prompt_name, "") if model.default_prompt_name else ""
