"""Whether this machine can compute on the device a run asks for (a local run computes here)."""

from __future__ import annotations

from pathlib import Path

from embedder.model import pick_device
from kit.commands import make_command
from kit.errors import ConfigError


def device_missing(device: str) -> str:
    """Why ``device`` cannot run here ("" when it can)."""
    if device not in ("cuda", "mps"):
        return ""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        built = "" if torch.version.cuda else ", a build without CUDA"
        return f"this machine has no CUDA device (torch {torch.__version__}{built})"
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        return "this machine has no MPS device (Apple silicon)"
    return ""


def require_device(device: str, run_dir: Path) -> None:
    """Refuse DEVICE=cuda|mps where this machine lacks it, with the setting that works here."""
    if device == "auto":  # a GPU handed to this process (CUDA_VISIBLE_DEVICES) that torch cannot use
        try:
            pick_device(device)
        except ConfigError as err:
            raise ConfigError(
                f"{err} Run {run_dir} is planned: {make_command('submit', RUN=run_dir, DEVICE='cpu')}"
            ) from None
    why = device_missing(device)
    if why:
        raise ConfigError(
            f"DEVICE={device}, but {why}; PROFILE=local embeds on this machine. Run {run_dir} is "
            f"planned; embed it with DEVICE=auto (a GPU where there is one, else the CPU): "
            f"{make_command('submit', RUN=run_dir, DEVICE='auto')}"
        )
