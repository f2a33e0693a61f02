"""make stage-model: download a hub model once, on the login node, into the shared cache."""

from __future__ import annotations

from pathlib import Path

from embedder.config import EmbedIdentity
from embedder.model import hub_cache_dir, resolve_model
from kit.errors import ModelNotFoundError
from slurm.profiles import LOCAL, load_profile


def profile_cache(profile: str | None) -> str | None:
    """The profile's shared model_cache (None: the default hub cache)."""
    return load_profile(profile).model_cache if profile and profile != LOCAL else None


def stage_model(model: str, profile: str | None, revision: str | None = None) -> Path:
    """Download ``model`` into the profile's model_cache (else the default hub cache); return its folder."""
    cache = profile_cache(profile)
    identity = EmbedIdentity(model=model, model_revision=revision)
    if identity.model_is_local:
        return Path(model).resolve()
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(model, revision=revision, cache_dir=cache)
    except Exception as err:  # offline, unknown repo, gated model: all end here with the cause
        raise ModelNotFoundError(
            f"Could not download {model!r} into {hub_cache_dir(cache)}: {type(err).__name__}: "
            f"{err}.\nCheck the spelling at https://huggingface.co/{model}; if it is right, "
            "run this on a machine with network (the login node), logged in with "
            "hf auth login for gated models."
        ) from err
    return resolve_model(identity, cache).path
