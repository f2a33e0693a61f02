"""Every call to a Slurm command (but submitit's own sbatch), and the parsing of what it prints.

Only stable interfaces are parsed: ``squeue`` and ``sacct`` with explicit fields and ``|``
separators, ``sinfo --version``, ``scontrol show config``'s ``Key = value`` lines; never
``scontrol show job`` text. An unknown state or an unparsable line is an error naming the
command and the line. A controller that does not answer (restart, failover, overload) is
retried with backoff for ``EMBEDKIT_SCHEDULER_RETRY_S`` seconds (default 300) before giving up.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace

from slurm.backend import KNOWN_STATES, JobState
from kit.errors import ConfigError, KitError

log = logging.getLogger(__name__)

RETRY_ENV = "EMBEDKIT_SCHEDULER_RETRY_S"
DEFAULT_RETRY_S = 300.0
TRANSIENT = re.compile(
    r"Unable to contact slurm controller|Socket timed out|Connection refused|"
    r"Zero Bytes were transmitted|Transport endpoint|Resource temporarily unavailable|"
    r"slurm_load_\w+ error|Communication connection failure|Connection timed out",
    re.I,
)
SQUEUE_FORMAT = "%i|%T|%r"
SACCT_FIELDS = "JobID,State,ExitCode,Start,NodeList"


class SchedulerUnreachable(KitError):
    """The Slurm controller did not answer within the retry time."""


class SlurmCommandError(ConfigError):
    """A Slurm command failed for a reason that retrying will not fix, or printed something unexpected."""


def retry_seconds() -> float:
    """Seconds to keep retrying an unanswered Slurm command: ``EMBEDKIT_SCHEDULER_RETRY_S``, else 300."""
    value = os.environ.get(RETRY_ENV, "")
    try:
        return float(value) if value else DEFAULT_RETRY_S
    except ValueError:
        raise ConfigError(f"{RETRY_ENV}={value!r} is not a number of seconds.") from None


def available() -> bool:
    """The Slurm query commands are on PATH here (a laptop after make fetch has none)."""
    return shutil.which("squeue") is not None


def require_slurm() -> None:
    """Raise a ``ConfigError`` unless the Slurm commands the kit runs are on ``PATH``."""
    missing = [c for c in ("sbatch", "squeue", "sinfo", "scontrol") if shutil.which(c) is None]
    if missing:
        raise ConfigError(
            f"Slurm commands {', '.join(missing)} are not on PATH. On a machine without Slurm "
            "use PROFILE=local."
        )


def run(argv: Sequence[str], retry_s: float | None = None) -> str:
    """stdout of ``argv``; transient controller failures are retried with backoff, others raise."""
    budget = retry_seconds() if retry_s is None else retry_s
    deadline, delay, warned = time.monotonic() + budget, 1.0, False
    while True:
        try:
            proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            proc = subprocess.CompletedProcess(argv, 1, "", "Socket timed out (no answer in 120 s)")
        if proc.returncode == 0:
            if warned:
                log.warning("%s: the Slurm controller answers again", argv[0])
            return proc.stdout
        err = proc.stderr.strip()
        if not TRANSIENT.search(err):
            raise SlurmCommandError(f"{' '.join(argv[:3])} failed (exit {proc.returncode}): {err[-400:]}")
        if time.monotonic() + delay > deadline:
            raise SchedulerUnreachable(
                f"{argv[0]}: the Slurm controller did not answer for {budget:.0f} s "
                f"({err.splitlines()[-1] if err else 'no message'})."
            )
        if not warned:
            log.warning(
                "%s: Slurm controller unreachable (%s); retrying for up to %.0f s",
                argv[0],
                err.splitlines()[-1] if err else "no message",
                budget,
            )
            warned = True
        time.sleep(delay)
        delay = min(delay * 2, 30.0)


def version() -> str:
    """``slurm 22.05.8``: the release of the Slurm commands on this machine."""
    return run(["sinfo", "--version"]).strip()


def parse_max_array_size(config_text: str) -> int:
    """MaxArraySize from ``scontrol show config`` output (Slurm's default is 1001)."""
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", config_text, flags=re.M)
    return int(match[1]) if match else 1001


def max_array_size() -> int:
    """The cluster's ``MaxArraySize``, from ``scontrol show config``."""
    return parse_max_array_size(run(["scontrol", "show", "config"]))


def partitions() -> set[str]:
    """The names of the cluster's partitions (the default one without its ``*``)."""
    return {p.rstrip("*") for p in run(["sinfo", "-h", "-o", "%R"]).split()}


def nodes_all_unavailable(partition: str | None) -> bool:
    """True when every node of ``partition`` (None: the default one) is drained, down or failing.

    ``sbatch --test-only`` then reports "Requested node configuration is not available" although
    a real submit would be accepted and pend until the nodes return.
    """
    rows = [line.split("|") for line in run(["sinfo", "-h", "-N", "-o", "%P|%T"]).splitlines() if "|" in line]
    states = [s for p, s in rows if (p.rstrip("*") == partition if partition else p.endswith("*"))]
    bad = ("drain", "down", "fail", "maint", "reserved", "inval", "unk", "not_responding")
    return bool(states) and all(any(b in s.lower() for b in bad) for s in states)


def gres_gpu_type(gres: str) -> str:
    """The GPU type in a node's gres as sinfo prints it: ``gpu:a100:2(S:0-1)`` -> ``a100``; several
    types joined with ``/``; "" for untyped GPUs or none."""
    types = []
    for item in gres.split(","):
        parts = item.split("(")[0].strip().split(":")
        if parts[0] == "gpu" and len(parts) == 3 and parts[1] not in types:
            types.append(parts[1])
    return "/".join(types)


def node_gpu_type(node: str, retry_s: float = 10.0) -> str:
    """The type of node ``node``'s GPUs as Slurm knows them (its gres type), from one sinfo call."""
    lines = run(["sinfo", "-h", "-N", "-n", node, "-o", "%G"], retry_s).split()
    return gres_gpu_type(lines[0]) if lines else ""


def partition_offers(partition: str | None) -> list[tuple[str, str]]:
    """(gres, features) of the kinds of node in ``partition`` (None: the default one), from one sinfo call:
    ``[("gpu:a100:2", "a100"), ("gpu:v100:2", "v100")]``."""
    rows = [
        line.split("|") for line in run(["sinfo", "-h", "-N", "-o", "%P|%G|%f"]).splitlines() if "|" in line
    ]
    kinds = [(g, f) for p, g, f in rows if (p.rstrip("*") == partition if partition else p.endswith("*"))]
    return list(dict.fromkeys(kinds))


def expand_task_ids(job_id: str) -> list[str]:
    """``123_[0-2,5%4]`` -> ``123_0 123_1 123_2 123_5``; plain ids unchanged."""
    match = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not match:
        return [job_id]
    out = []
    for part in match[2].split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        out += [f"{match[1]}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def _state_word(text: str, command: str, line: str) -> str:
    word = text.split()[0] if text.split() else ""
    if word not in KNOWN_STATES:
        raise SlurmCommandError(
            f"{command} printed a job state the kit does not know, {word!r}, in line "
            f"{line!r}. Please report it with your Slurm version (sinfo --version)."
        )
    return word


def _rows(text: str, command: str, n_fields: int):
    """(line, fields, state) of each ``|``-separated line; a line of another shape is an error."""
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.strip().split("|")
        if len(parts) != n_fields or not parts[0]:
            raise SlurmCommandError(f"{command} printed a line the kit cannot read: {line!r}")
        yield parts, _state_word(parts[1], command, line)


def parse_squeue(text: str) -> dict[str, JobState]:
    """Rows of ``squeue -h -r -o '%i|%T|%r'``."""
    states = {}
    for (job_id, _, reason), state in _rows(text, "squeue", 3):
        for task in expand_task_ids(job_id):
            states[task] = JobState(task, state, "" if reason in ("None", "(null)") else reason)
    return states


def parse_sacct(text: str) -> dict[str, JobState]:
    """Rows of ``sacct -n -X -P -o JobID,State,ExitCode,Start,NodeList -D``.

    With ``-D`` a requeued task has one row per attempt, oldest first: the latest gives its state,
    and an earlier one that ended ``NODE_FAIL`` names a node the task was lost with.
    """
    states: dict[str, JobState] = {}
    for (job_id, _, exit_code, start, nodes), state in _rows(text, "sacct", 5):
        reason = "" if exit_code in ("", "0:0") else f"exit {exit_code}"
        node = "" if nodes in ("", "None assigned", "(null)") else nodes
        for task in expand_task_ids(job_id):
            earlier = states.get(task)
            lost = earlier.lost_nodes if earlier else ()
            if earlier is not None and earlier.state == "NODE_FAIL" and earlier.node not in lost:
                lost = (*lost, earlier.node or "an unknown node")
            started = start not in ("Unknown", "None", "")
            states[task] = JobState(task, state, reason, started=started, node=node, lost_nodes=lost)
    return states


def with_history(queued: dict[str, JobState], acct: dict[str, JobState] | None) -> dict[str, JobState]:
    """squeue's states of live tasks over sacct's of all, keeping what sacct alone knows (lost nodes)."""
    merged = dict(acct or {})
    for task, state in queued.items():
        known = merged.get(task)
        merged[task] = replace(state, lost_nodes=known.lost_nodes) if known else state
    return merged


def queue(job_ids: Sequence[str], retry_s: float | None = None) -> dict[str, JobState]:
    """The user's tasks still in the queue that belong to ``job_ids``, from one squeue call.

    Asks for the user's jobs and filters here: ``squeue -j`` fails outright when a single id
    has already been forgotten by slurmctld (MinJobAge), which old runs always have.
    """
    if not job_ids:
        return {}
    wanted = set(job_ids)
    states = parse_squeue(run(["squeue", "-h", "-r", "--me", "-o", SQUEUE_FORMAT], retry_s))
    return {k: v for k, v in states.items() if k.split("_")[0] in wanted or k in wanted}


def accounting(job_ids: Sequence[str], retry_s: float | None = None) -> dict[str, JobState] | None:
    """One sacct call for all of ``job_ids``; None where accounting is not available."""
    if not job_ids or shutil.which("sacct") is None:
        return None
    try:
        text = run(["sacct", "-n", "-X", "-P", "-j", ",".join(job_ids), "-o", SACCT_FIELDS, "-D"], retry_s)
    except SlurmCommandError as err:
        log.warning("sacct is not usable here (%s); judging ended jobs from the files", err)
        return None
    return parse_sacct(text)


def cancel(job_ids: Sequence[str]) -> None:
    """``scancel`` the jobs ``job_ids`` (nothing to run when there are none)."""
    if job_ids:
        run(["scancel", *job_ids])


def test_only(script: str) -> str:
    """``sbatch --test-only`` of a rendered script: '' if Slurm would accept it, else its error text."""
    proc = subprocess.run(
        ["sbatch", "--test-only"], input=script, capture_output=True, text=True, timeout=120
    )
    if proc.returncode == 0:
        return ""
    return proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
