"""Find a model offline, pick a device, load it, and describe what was loaded."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from embedder.config import EmbedIdentity
from kit.errors import ConfigError, ModelNotFoundError
from kit.gpudriver import no_cuda_driver

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
OFFLINE_HINT = "the all-MiniLM-L6-v2 shipped with the kit, which works offline"


@dataclass(frozen=True)
class ResolvedModel:
    """A model folder on disk and what identifies it."""

    path: Path
    name: str  # as the user gave it
    model_revision: str  # hub commit of the cached snapshot, or "local" for a folder


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


def resolve_model(
    identity: EmbedIdentity, cache_dir: str | None = None, profile: str | None = None
) -> ResolvedModel:
    """A local folder as is; a hub name from the offline cache only (never downloads).

    Raises:
        ModelNotFoundError: naming the folder or the cache path, and the command that stages the model.
    """
    local = Path(identity.model).expanduser()
    if local.is_dir():
        return ResolvedModel(local.resolve(), identity.model, "local")
    if looks_like_a_path(identity.model):
        raise ModelNotFoundError(
            f"Model folder {local} does not exist. Check MODEL= (a local folder, a hub name "
            f"staged with make stage-model, or MODEL=demo: {OFFLINE_HINT})."
        )
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(
            identity.model, revision=identity.model_revision, cache_dir=cache_dir, local_files_only=True
        )
    except Exception as err:  # huggingface_hub raises several types for "not cached"
        from kit.commands import make_command

        stage = make_command(
            "stage-model", MODEL=identity.model, REVISION=identity.model_revision, PROFILE=profile
        )
        close = difflib.get_close_matches(identity.model, cached_models(cache_dir), n=1, cutoff=0.8)
        fix = (
            f"Did you mean MODEL={close[0]} (in the cache)?"
            if close
            else f"If the name is right (https://huggingface.co/{identity.model}), stage it once on the login node "
            f"(with network): {stage}"
        )
        raise ModelNotFoundError(
            f"Model {identity.model!r}{'@' + identity.model_revision if identity.model_revision else ''} is not in the "
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
    return sorted(p.name[len("models--") :].replace("--", "/") for p in found)


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


def force_offline() -> None:
    """No hub access from here on, also where ``huggingface_hub`` has already read its environment.

    ``huggingface_hub.constants`` reads HF_HUB_OFFLINE once, at import; transformers and ``kernels``
    ask ``huggingface_hub.is_offline_mode()``, which returns that constant.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        setattr(constants, "HF_HUB_OFFLINE", True)  # noqa: B010 (a module looked up at run time: not typed)


# Variables through which a scheduler (or a user) hands this process GPUs.
GPU_CLAIM_VARIABLES = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE")


def gpu_claims(environ: dict | None = None) -> dict[str, str]:
    """The variables that say this process holds GPUs (empty, ``-1`` and ``NoDevFiles`` say none)."""
    env = os.environ if environ is None else environ
    none = {"", "-1", "NoDevFiles"}
    return {
        k: env[k]
        for k in GPU_CLAIM_VARIABLES
        if env.get(k, "").strip() not in (none | {"0"} if k == "SLURM_GPUS_ON_NODE" else none)
    }


def driver_version() -> str:
    """The NVIDIA driver as nvidia-smi reports it, or why it could not be asked."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "unknown (no nvidia-smi on PATH)"
    try:
        out = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as err:
        return f"unknown (nvidia-smi failed: {err})"
    return (
        out.stdout.strip().splitlines()[0]
        if out.returncode == 0 and out.stdout.strip()
        else (f"unknown (nvidia-smi: {(out.stderr or out.stdout).strip()[:200]})")
    )


def cuda_unusable_message(claims: dict[str, str], requested: str, gpus_requested: bool) -> str:
    """Why a task that holds a GPU refuses to run on the CPU, with torch's CUDA and the driver."""
    import torch

    held = ", ".join(f"{k}={v}" for k, v in claims.items()) or (
        "the profile requests GPUs" if gpus_requested else f"DEVICE={requested}"
    )
    built = torch.version.cuda or "none (a CPU-only torch wheel)"
    return (
        f"This task holds or asks for a GPU ({held}) but torch cannot use it: torch {torch.__version__} built for CUDA "
        f"{built}, NVIDIA driver {driver_version()}. DEVICE={requested} would run on the CPU at a fraction "
        "of the speed. Install a torch wheel whose CUDA the driver supports (pip install torch --index-url "
        "https://download.pytorch.org/whl/cu126 for drivers >= 560), or check the GPU request of the "
        "profile; to run on the CPU on purpose, pass DEVICE=cpu."
    )


def pick_device(requested: str, gpus_requested: bool = False, environ: dict | None = None) -> str:
    """``auto``: CUDA, then MPS, then CPU; never the CPU when this process holds a GPU it cannot use.

    Raises:
        ConfigError: CUDA is asked for, held (CUDA_VISIBLE_DEVICES, SLURM_JOB_GPUS, SLURM_STEP_GPUS) or
            requested by the profile, and ``torch.cuda.is_available()`` is False: before the model loads.
    """
    if requested not in ("auto", "cuda"):
        return requested
    torch = None if no_cuda_driver() else importlib.import_module("torch")  # Linux without a GPU: no torch
    if torch is not None and torch.cuda.is_available():
        return "cuda"
    claims = gpu_claims(environ)
    if requested == "cuda" or claims or gpus_requested:
        raise ConfigError(cuda_unusable_message(claims, requested, gpus_requested))
    if torch is not None and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def gpu_name(device: str) -> str:
    """The GPU's name and compute capability (``NVIDIA H100 80GB HBM3 sm90``), or "" off CUDA."""
    import torch

    if device != "cuda":
        return ""
    major, minor = torch.cuda.get_device_capability()
    return f"{torch.cuda.get_device_name()} sm{major}{minor}"


def position_limit(config) -> int | None:
    """The longest input the model's position embeddings take (RoBERTa-style offsets removed), or None."""
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int):
        return None
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "mpnet"):
        limit -= int(getattr(config, "pad_token_id", 1) or 1) + 1  # positions start after the padding index
    return limit


def check_max_seq_length(requested: int | None, config, model_name: str) -> None:
    """Refuse a MAX_SEQ_LENGTH the model has no positions for (on CUDA: a device-side assert, not an error).

    Raises:
        ConfigError: naming the model's limit.
    """
    limit = position_limit(config)
    if requested is not None and limit is not None and requested > limit:
        raise ConfigError(
            f"MAX_SEQ_LENGTH={requested} is more than {model_name!r} has positions for ({limit}, "
            f"max_position_embeddings of its config). Pass MAX_SEQ_LENGTH={limit} or less.",
            repair={"MAX_SEQ_LENGTH": limit},
        )


# ATTENTION= values and the transformers attn_implementation each loads (None: the model's own).
ATTN_IMPLEMENTATIONS = {"sdpa": "sdpa", "eager": "eager", "flash": "flash_attention_2"}


def load_model(
    resolved: ResolvedModel, identity: EmbedIdentity, device: str, dtype: str, attention: str | None = None
):
    """A SentenceTransformer on ``device`` with weights in ``dtype``, loaded offline.

    ``attention`` picks the attention back-end; None keeps the model's own choice (PyTorch SDPA
    where the architecture supports it). ``flash`` also packs batches without padding
    (sentence-transformers does so when a varlen flash kernel is importable).
    """
    force_offline()  # belt and braces: a compute task never reaches a hub
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()  # "Loading weights 103/103": noise in every log

    model_kwargs = {"dtype": getattr(torch, dtype)}
    if attention:
        model_kwargs["attn_implementation"] = ATTN_IMPLEMENTATIONS[attention]
    model = SentenceTransformer(
        str(resolved.path), device=device, local_files_only=True, model_kwargs=model_kwargs
    )
    if identity.max_seq_length:
        check_max_seq_length(
            identity.max_seq_length, getattr(getattr(model[0], "model", None), "config", None), resolved.name
        )
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
    return " | ".join(
        type(m).__name__ + (f"({m.get_config_dict()})" if hasattr(m, "get_config_dict") else "")
        for m in list(model)[1:]
    )


def prompt_text(model, identity: EmbedIdentity) -> str:
    """The literal prompt prepended to every text ("" for none)."""
    if identity.prompt is not None:
        return identity.prompt
    if identity.prompt_name:
        return model.prompts[identity.prompt_name]
    return model.prompts.get(model.default_prompt_name, "") if model.default_prompt_name else ""
