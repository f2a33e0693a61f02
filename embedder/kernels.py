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


FLASH_MIN_CAPABILITY = (8, 0)  # FlashAttention-2 runs on Ampere (sm80) and newer


def _flash_attn_installed() -> bool:
    """True when the flash-attn package imports: a wheel built for another torch or CUDA is found but
    fails to import (undefined symbol), the most common flash-attn failure.

    Raises:
        ConfigError: flash-attn is installed but cannot be imported, with the cause and the fix.
    """
    if importlib.util.find_spec("flash_attn") is None:
        return False
    try:
        import flash_attn  # noqa: F401
        from flash_attn import flash_attn_varlen_func  # noqa: F401
    except Exception as err:  # ImportError, OSError (undefined symbol), RuntimeError: all mean "cannot run"
        raise ConfigError(
            f"ATTENTION=flash: flash-attn is installed but cannot be imported ({type(err).__name__}: "
            f"{str(err)[:300]}); it was built for another torch or CUDA. Reinstall it for this torch "
            "(pip install --no-build-isolation --force-reinstall flash-attn), uninstall it to use the "
            "prebuilt kernel (pip uninstall flash-attn; make stage-model ATTENTION=flash), or use ATTENTION=sdpa."
        ) from err
    return True


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


def check_flash_attention(
    device: str,
    dtype: str,
    cache_dir: str | None = None,
    model: str = "",
    capability: tuple[int, int] | None = None,
) -> None:
    """Refuse ATTENTION=flash, before the model loads, where it cannot run; offline.

    ``capability`` is the GPU's (major, minor); None asks torch.

    Raises:
        ConfigError: not CUDA, a GPU older than sm80, float32, or no kernel that imports or is staged,
            with the next step.
    """
    if device != "cuda":
        raise ConfigError(
            f"ATTENTION=flash runs on CUDA GPUs only; this task's device is {device}. "
            "Use ATTENTION=sdpa (the default)."
        )
    if dtype not in FLASH_DTYPES:
        raise ConfigError(
            f"ATTENTION=flash computes in bfloat16 or float16, not {dtype}. Drop COMPUTE_DTYPE "
            "(bfloat16 is the CUDA default) or use ATTENTION=sdpa."
        )
    if capability is None:
        import torch

        capability = torch.cuda.get_device_capability()
    if tuple(capability) < FLASH_MIN_CAPABILITY:
        raise ConfigError(
            f"ATTENTION=flash needs an Ampere or newer GPU (compute capability 8.0+); this one is "
            f"{capability[0]}.{capability[1]}. Use ATTENTION=sdpa (the default)."
        )
    if _flash_attn_installed():
        return
    from embedder.model import force_offline

    force_offline()  # before ``kernels`` (and huggingface_hub) are imported: has_kernel must not go online
    kernels = _kernels(cache_dir)
    if not kernels.has_kernel(FLASH_KERNEL_REPO, version=flash_kernel_version()):
        from kit.commands import make_command

        raise ConfigError(
            f"ATTENTION=flash: the kernel {FLASH_KERNEL_REPO} is not in the offline cache "
            f"{os.environ.get('KERNELS_CACHE') or 'the default hub cache'} (or has no build for this GPU). "
            f"Stage it once on the login node: {make_command('stage-model', MODEL=model, ATTENTION='flash')}"
        )
