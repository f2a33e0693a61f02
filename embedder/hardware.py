"""Where a task computes: its node, the GPU index the scheduler handed it and that GPU's type, and the
torch and CUDA versions. Every shard records them (docs/FORMAT.md), and the merge names them when
shards disagree (kit/canary.py).

The one place the embed task reads what a scheduler says about its hardware:

- ``CUDA_VISIBLE_DEVICES``: the GPU index(es) Slurm (or the local backend) gave this task. CUDA
  numbers the visible devices from 0, so device 0 of the process *is* the given GPU. Where a
  scheduler gave GPUs but left ``CUDA_VISIBLE_DEVICES`` unset (``SLURM_STEP_GPUS`` /
  ``SLURM_JOB_GPUS`` only), ``claim_scheduler_gpus`` sets it from them before CUDA starts, so the
  task never falls back on device 0 of the node by habit.
- ``SLURMD_NODENAME``: the node (several nodes may share one host name).
- ``EMBEDKIT_GPU_TYPE``: the GPU type as the scheduler knows the node (its gres type, e.g. ``a100``),
  set by the Slurm task wrapper (slurm/tasks.py). On CUDA the device itself says what it is.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from kit.canary import GPU_TYPE_ENV

NODE_ENV = "SLURMD_NODENAME"
SCHEDULER_GPU_VARIABLES = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS")  # indices Slurm gave, in its own words
NO_GPU = ("", "-1", "NoDevFiles")


def claim_scheduler_gpus(environ: dict[str, str] | None = None) -> str:
    """Make CUDA see exactly the GPUs the scheduler gave: ``CUDA_VISIBLE_DEVICES`` as set, else from
    ``SLURM_STEP_GPUS`` / ``SLURM_JOB_GPUS``. Call before the first CUDA call. Returns the value ("" for none)."""
    env = os.environ if environ is None else environ
    given = env.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return given
    for name in SCHEDULER_GPU_VARIABLES:
        value = env.get(name, "").strip()
        if value not in NO_GPU:
            env["CUDA_VISIBLE_DEVICES"] = value
            return value
    return ""


def gpu_index(device: str, environ: Mapping[str, str] | None = None) -> str:
    """The scheduler's index of the GPU this task uses: the first of ``CUDA_VISIBLE_DEVICES`` (the
    process's device 0), "" where none was given. On CUDA without the variable, torch's current device."""
    env = os.environ if environ is None else environ
    visible = [v.strip() for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and visible[0] not in NO_GPU:
        return visible[0]
    if device == "cuda":
        import torch

        return str(torch.cuda.current_device())
    return ""


def describe(device: str, gpu_name: str = "", environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Shard attributes of this task's hardware: ``node``, ``gpu_index``, ``gpu_type`` (the CUDA device's
    name and compute capability, else the scheduler's type of the node's GPUs), ``gres_type`` (the
    scheduler's type: what a profile's ``gpu_type`` asks for), ``torch_version`` and ``cuda_version``
    ("" for a torch without CUDA)."""
    import torch

    env = os.environ if environ is None else environ
    return {
        "node": env.get(NODE_ENV) or socket.gethostname(),
        "gpu_index": gpu_index(device, env),
        "gpu_type": gpu_name or env.get(GPU_TYPE_ENV, ""),
        "gres_type": env.get(GPU_TYPE_ENV, ""),
        "torch_version": str(torch.__version__),
        "cuda_version": str(torch.version.cuda or ""),
    }
