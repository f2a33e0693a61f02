"""The flash-attention kernel for ATTENTION=flash: staged once with network, checked offline.

Packed (padding-free) batches need a varlen flash-attention kernel: the ``flash-attn``
package, or the prebuilt ``kernels-community/flash-attn2`` from the hub through the ``kernels``
package (what transformers loads for ``attn_implementation="flash_attention_2"`` when
flash-attn is not installed). Compute nodes have no network, so ``make stage-model
ATTENTION=flash`` downloads the kernel into the shared cache beside the model, and each task
checks for it offline before loading the model.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from kit.errors import ConfigError

FLASH_KERNEL_REPO = "kernels-community/flash-attn2"
FLASH_DTYPES = ("bfloat16", "float16")


def flash_kernel_version() -> int:
    """The kernel version transformers asks for with this torch."""
    from transformers.modeling_flash_attention_utils import FLASH_ATTN_KERNEL_VERSIONS

    return FLASH_ATTN_KERNEL_VERSIONS[FLASH_KERNEL_REPO]


def _flash_attn_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def _kernels(cache_dir: str | None):
    """The ``kernels`` package, pointed at ``cache_dir`` (read once, when it is first imported)."""
    if cache_dir:
        os.environ.setdefault("KERNELS_CACHE", str(cache_dir))
    try:
        import kernels
    except ImportError as err:
        raise ConfigError(
            "ATTENTION=flash needs a flash-attention kernel: pip install kernels (prebuilt kernels from the hub) "
            "or pip install flash-attn, in the environment the tasks use. Or use ATTENTION=sdpa (the default)."
        ) from err
    return kernels


def stage_flash_kernel(cache_dir: str | None = None) -> str:
    """Download the flash-attention kernel for this torch build into ``cache_dir`` (needs network).

    Returns what is now available ("flash-attn package" or the kernel's folder), for the log.

    Raises:
        ConfigError: ``kernels`` is not installed, or the download failed (with the cause).
    """
    if _flash_attn_installed():
        return "flash-attn package (nothing to stage)"
    kernels = _kernels(cache_dir)
    try:
        path = kernels.install_kernel(FLASH_KERNEL_REPO, version=flash_kernel_version())
    except Exception as err:  # network, no build for this torch/CUDA: all end here with the cause
        raise ConfigError(
            f"Could not download {FLASH_KERNEL_REPO} into {cache_dir or 'the default hub cache'}: "
            f"{type(err).__name__}: {err}. Run this on a machine with network (the login node), in the "
            "environment the tasks use (the kernel is built per torch and CUDA version)."
        ) from err
    return str(Path(path))


def check_flash_attention(device: str, dtype: str, cache_dir: str | None = None, model: str = "") -> None:
    """Refuse ATTENTION=flash, before the model loads, where it cannot run; offline.

    Raises:
        ConfigError: not CUDA, float32, or no kernel installed or staged, with the next step.
    """
    if device != "cuda":
        raise ConfigError(f"ATTENTION=flash runs on CUDA GPUs only; this task's device is {device}. "
                          "Use ATTENTION=sdpa (the default).")
    if dtype not in FLASH_DTYPES:
        raise ConfigError(f"ATTENTION=flash computes in bfloat16 or float16, not {dtype}. Drop COMPUTE_DTYPE "
                          "(bfloat16 is the CUDA default) or use ATTENTION=sdpa.")
    if _flash_attn_installed():
        return
    kernels = _kernels(cache_dir)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if not kernels.has_kernel(FLASH_KERNEL_REPO, version=flash_kernel_version()):
        from kit.commands import make_command

        raise ConfigError(
            f"ATTENTION=flash: the kernel {FLASH_KERNEL_REPO} is not in the offline cache "
            f"{os.environ.get('KERNELS_CACHE') or 'the default hub cache'} (or has no build for this GPU). "
            f"Stage it once on the login node: {make_command('stage-model', MODEL=model, ATTENTION='flash')}"
        )
