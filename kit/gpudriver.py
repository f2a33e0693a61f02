"""Whether this machine can have a CUDA device at all, told from its device files without loading torch.

Loading torch takes about 2 s; a CPU-only Linux machine (a laptop, a login node, CI) need not pay it
to learn that it has no GPU. Where any of these files exists, torch is asked as before.
"""

from __future__ import annotations

import os
import sys

# NVIDIA's control device (also in containers given GPUs), AMD ROCm's (torch.cuda on ROCm), WSL2's GPU
CUDA_DRIVER_FILES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def no_cuda_driver() -> bool:
    """True on Linux without any GPU driver's device file, where ``torch.cuda`` sees no device."""
    return sys.platform.startswith("linux") and not any(os.path.exists(p) for p in CUDA_DRIVER_FILES)
