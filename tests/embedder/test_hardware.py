"""What a task records of its hardware, and that it uses exactly the GPU the scheduler gave it."""

from embedder import hardware
from kit.canary import GPU_TYPE_ENV


def test_the_gpus_slurm_gave_become_cuda_visible_devices_before_cuda_starts():
    env = {"SLURM_STEP_GPUS": "3", "SLURM_JOB_GPUS": "3"}
    assert hardware.claim_scheduler_gpus(env) == "3" and env["CUDA_VISIBLE_DEVICES"] == "3"
    given = {"CUDA_VISIBLE_DEVICES": "1", "SLURM_JOB_GPUS": "1"}
    assert hardware.claim_scheduler_gpus(given) == "1"  # as Slurm set it: kept
    none = {"SLURM_JOB_GPUS": ""}
    assert hardware.claim_scheduler_gpus(none) == "" and "CUDA_VISIBLE_DEVICES" not in none


def test_a_task_records_its_node_the_index_it_was_given_and_the_nodes_gpu_type():
    env = {"SLURMD_NODENAME": "a100-2", "CUDA_VISIBLE_DEVICES": "1,3", GPU_TYPE_ENV: "a100"}
    found = hardware.describe("cpu", "", env)
    assert (found["node"], found["gpu_index"], found["gpu_type"]) == ("a100-2", "1", "a100")
    assert found["torch_version"] and "cuda_version" in found
    assert (
        hardware.describe("cuda", "NVIDIA A100-SXM4-80GB sm80", env)["gpu_type"]
        == "NVIDIA A100-SXM4-80GB sm80"
    )
    assert hardware.gpu_index("cpu", {}) == ""
