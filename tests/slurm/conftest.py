"""Which test cluster the Slurm tests run against, for every test file in tests/slurm.

By default the host's cluster (slurm/testcluster/setup.sh: Debian bookworm, Slurm 22.05). With
EMBEDKIT_TEST_CLUSTER=sid, Debian unstable's (slurm/testcluster/sid/setup.sh: Slurm 26.05), from
inside its chroot, where slurm/testcluster/sid/run-tests.sh starts pytest (a 22.05 client cannot
talk to a 26.05 controller). make test runs tests/slurm on both.

Both clusters have the same three nodes (slurm/testcluster/common.sh): a100-1 and a100-2 with two
a100 GPUs each, v100-1 with two v100, each a ``slurmd -N <node>`` of its own; ``kill_node`` and
``start_node`` lose one and bring it back (slurm/testcluster/node.sh, from inside either root).

Tests that need a cluster take the ``slurm_cluster`` fixture (or ``slurm_profile``): it fails
loudly, never skips, when the cluster is down, has fewer nodes (an older one-node setup) or is
another Slurm version than expected.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_ENV = "EMBEDKIT_TEST_CLUSTER"


@dataclass(frozen=True)
class Cluster:
    key: str  # the value of EMBEDKIT_TEST_CLUSTER that selects it
    slurm: str  # the Slurm release it runs ("22.05"): checked against sinfo --version
    profile: str  # slurm/profiles/<profile>.toml for its jobs
    setup: str  # the command that starts it
    run: str  # the command that runs tests/slurm against it


CLUSTERS = {
    "bookworm": Cluster(
        "bookworm",
        "22.05",
        "testcluster",
        "bash slurm/testcluster/setup.sh",
        "HF_HUB_OFFLINE=1 .venv/bin/python -m pytest tests/slurm",
    ),
    "sid": Cluster(
        "sid",
        "26.05",
        "testcluster",
        "bash slurm/testcluster/sid/setup.sh",
        "bash slurm/testcluster/sid/run-tests.sh tests/slurm",
    ),
}
# Partitions of both clusters that refuse one GPU request form (slurm/testcluster/job_submit.lua).
REFUSING_PARTITION = {"gres": "nogres", "gpus": "nogpus"}
NODE_SCRIPT = REPO / "slurm/testcluster/node.sh"
MIN_NODES = 3


def node_types() -> dict[str, str]:
    """Node -> the type of its GPUs (its gres type), as the cluster's sinfo says."""
    from slurm.slurmcli import gres_gpu_type

    out = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%N|%G"], capture_output=True, text=True, check=True
    ).stdout
    return {node: gres_gpu_type(gres) for node, gres in (line.split("|") for line in out.split())}


def start_requeued_now(job_ids: Iterable[str]) -> None:
    """Slurm holds a requeued job back for about two minutes (reason BeginTime: its cred_expire) before
    it may start again; start those of ``job_ids`` (jobs, or array tasks ``A_i``) that wait so now, as an
    admin may. The tests of requeues (preemption, a lost node) then take seconds, not minutes."""
    wanted = set(job_ids)
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T|%r"], capture_output=True, text=True).stdout
    for task, state, reason in (line.split("|", 2) for line in out.splitlines() if line.count("|") >= 2):
        if (task in wanted or task.split("_")[0] in wanted) and state == "PENDING" and reason == "BeginTime":
            subprocess.run(["scontrol", "update", f"jobid={task}", "StartTime=now"], capture_output=True)


def kill_node(node: str) -> None:
    """Lose ``node`` as a machine is lost: its slurmd and its jobs' processes killed, the node DOWN."""
    subprocess.run(["bash", str(NODE_SCRIPT), "kill", node], check=True, capture_output=True, text=True)


def start_node(node: str) -> None:
    """Bring ``node`` back: its slurmd started again, RESUMEd."""
    subprocess.run(["bash", str(NODE_SCRIPT), "start", node], check=True, capture_output=True, text=True)


def selected_cluster() -> Cluster:
    key = os.environ.get(CLUSTER_ENV) or "bookworm"
    if key not in CLUSTERS:
        raise pytest.UsageError(f"{CLUSTER_ENV}={key!r}: choose one of {', '.join(CLUSTERS)}.")
    return CLUSTERS[key]


def slurm_release() -> str:
    """'22.05' from sinfo --version ('slurm-wlm 22.05.8' on Debian, 'slurm 26.05.5' upstream)."""
    words = subprocess.run(["sinfo", "--version"], capture_output=True, text=True, check=True).stdout.split()
    return ".".join(words[-1].split(".")[:2])


def pytest_report_header(config) -> str:
    cluster = selected_cluster()
    return f"Slurm test cluster: {cluster.key} (Slurm {cluster.slurm}, profile {cluster.profile})"


@pytest.fixture(scope="session")
def slurm_cluster() -> Cluster:
    """The selected test cluster, up and of the expected version: fail loudly, never skip."""
    cluster = selected_cluster()
    if shutil.which("sbatch") is None or subprocess.run(["scontrol", "ping"], capture_output=True).returncode:
        raise RuntimeError(
            f"The Slurm test cluster {cluster.key!r} is not running: {cluster.setup} "
            "(make test-services starts both)"
        )
    nodes = node_types()
    if len(nodes) < MIN_NODES:
        raise RuntimeError(
            f"The Slurm test cluster {cluster.key!r} has {len(nodes)} node(s) ({', '.join(nodes)}); the tests "
            f"need the {MIN_NODES}-node one: {cluster.setup} (it reconfigures an older one-node setup)"
        )
    found = slurm_release()
    if found != cluster.slurm:
        raise RuntimeError(
            f"{CLUSTER_ENV}={cluster.key} expects Slurm {cluster.slurm} but sinfo here is {found}. "
            f"Run the tests for it with: {cluster.run}"
        )
    return cluster


@pytest.fixture(scope="session")
def slurm_profile(slurm_cluster) -> str:
    """The profile the selected cluster's jobs use (make submit PROFILE=...)."""
    return slurm_cluster.profile


def profile_with(tmp_path: Path, setup: tuple[str, ...] = (), **embed: object) -> Path:
    """The cluster's profile with some [embed] values replaced, and ``setup`` lines run first in each job."""
    text = (REPO / f"slurm/profiles/{selected_cluster().profile}.toml").read_text()
    for line in setup:
        text = text.replace("setup = [\n", f"setup = [\n  {json.dumps(line)},\n", 1)
    for key, value in embed.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        if not n:
            text = text.replace("[embed]\n", f"[embed]\n{key} = {value}\n", 1)
    path = tmp_path / "profile.toml"
    path.write_text(text)
    return path


USABLE_NODE_STATES = {"idle", "mix", "mixed", "alloc", "allocated", "comp", "completing"}


def nodes_usable() -> bool:
    """Every node of the cluster answers and takes jobs (none drained, down, unknown or not responding)."""
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True).stdout.split()
    return bool(out) and all(state in USABLE_NODE_STATES for state in out)


def wait_nodes_usable(timeout_s: float = 120) -> None:
    """Until every node takes jobs again: after a drain's resume, a controller restart or a node brought
    back, Slurm may refuse a --test-only for a few seconds ("Requested node configuration is not
    available"), which would fail the next test, not the one that changed the nodes."""
    deadline = time.monotonic() + timeout_s
    while not nodes_usable():
        if time.monotonic() > deadline:
            states = subprocess.run(["sinfo", "-N", "-o", "%N %t %E"], capture_output=True, text=True).stdout
            raise AssertionError(
                f"the test cluster's nodes did not all come back in {timeout_s:.0f} s:\n{states}"
            )
        time.sleep(1)


@pytest.fixture
def cancel_leftovers():
    """Run folders a test submits; their jobs are cancelled afterwards, never left for the next test.
    It starts once every node takes jobs (what a test before it may have changed)."""
    wait_nodes_usable()
    runs: list[Path] = []
    yield runs
    for run in runs:
        if (run / "run.json").exists():
            ids = [j["job_id"] for j in json.loads((run / "run.json").read_text())["jobs"]]
            subprocess.run(["scancel", *ids], capture_output=True)
