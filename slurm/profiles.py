"""Cluster profiles: what a site's Slurm needs, as frozen dataclasses loaded from TOML. Pure."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from kit.errors import ConfigError

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
LOCAL = "local"  # not a file: submitit's local executor


@dataclass(frozen=True)
class Resources:
    """What one job of a stage asks Slurm for."""

    partition: str | None = None  # --partition
    account: str | None = None  # --account
    qos: str | None = None  # --qos
    gpus_per_task: int = 0  # GPUs per array task (one task = one shard = one job of the array)
    gpu_request: str = "gres"  # how a site wants them asked for: a key of GPU_REQUEST_FORMS
    gres: str | None = None  # a full --gres value instead (e.g. "gpu:a100:1"); with gpu_request = "gres"
    gpu_type: str | None = None  # a GPU type (e.g. "a100"): --gres=gpu:a100:N, --gpus-per-task=a100:N, ...
    cpus_per_task: int = 1  # --cpus-per-task
    mem_gb: float | None = None  # --mem
    timeout_min: int = 60  # --time, minutes
    array_parallelism: int = 256  # at most this many array tasks run at once (%N)
    constraint: str | None = None  # --constraint: node features (e.g. "a100", "a100|h100")
    exclude: str | None = None  # --exclude (nodes)
    signal_delay_s: int = 120  # USR2 this long before the time limit: checkpoint and requeue
    max_requeues: int | None = None  # cap on requeues of one task (preemptions and time limits); None: no cap
    max_stalled_time_limits: int = 2  # time limits in a row without a flushed row before a task gives up
    sbatch_extra: dict[str, Any] = field(default_factory=dict)  # any other sbatch option


@dataclass(frozen=True)
class ClusterProfile:
    """A site: resources of the embed and merge stages and the lines run before each task."""

    name: str
    embed: Resources
    merge: Resources
    setup: tuple[str, ...] = ()  # module load / conda activate / exports, run before the task
    model_cache: str | None = None  # HF hub cache on shared storage (make stage-model fills it)
    python: str | None = None  # interpreter on the compute nodes; None: the one that submits
    device: str | None = (
        None  # DEVICE of the tasks when the command gives none (e.g. "cpu" on CPU-only nodes)
    )


_TOP_KEYS = {"setup", "model_cache", "python", "device", "embed", "merge"}
DEVICES = ("auto", "cuda", "mps", "cpu")

# Site policy: sites accept different ways of asking for GPUs (some refuse --gres, some --gpus;
# on Slurm >= 26.05 --gres=gpu and --gpus-per-node exclude each other). A stage emits exactly one.
GPU_REQUEST_FORMS = {"gres": "--gres=gpu:N", "gpus-per-task": "--gpus-per-task=N", "gpus": "--gpus=N"}
# sbatch options that would be a second GPU request beside the one gpu_request emits.
_GPU_OPTIONS = {"gres", "gpus", "gpus-per-task", "gpus_per_task", "gpus-per-node", "gpus_per_node", "G"}


def available_profiles() -> list[str]:
    """Profile names PROFILE= accepts: local and every slurm/profiles/*.toml not starting with _."""
    return sorted([LOCAL, *(p.stem for p in PROFILES_DIR.glob("*.toml") if not p.stem.startswith("_"))])


def _resources(table: dict, where: str) -> Resources:
    valid = {f.name: f for f in fields(Resources)}
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise ConfigError(f"Unknown key(s) {', '.join(unknown)} in {where}. Valid keys: {', '.join(valid)}.")
    for key, value in table.items():
        expected = str(valid[key].type)  # the annotation as written (the module postpones annotations)
        ok = {
            "int": isinstance(value, int),
            "int | None": isinstance(value, int),
            "float | None": isinstance(value, (int, float)),
            "dict[str, Any]": isinstance(value, dict),
        }.get(expected, isinstance(value, str))
        if not ok or isinstance(value, bool) and expected != "dict[str, Any]":
            raise ConfigError(f"{where}.{key} = {value!r} should be {expected}.")
    _check_gpu_request(table, where)
    return Resources(**table)


def _check_gpu_request(table: dict, where: str) -> None:
    """One way of asking for GPUs per stage: gpu_request's form, or a full gres string."""
    form = table.get("gpu_request", "gres")
    if form not in GPU_REQUEST_FORMS:
        choices = ", ".join(f'"{k}" ({v})' for k, v in GPU_REQUEST_FORMS.items())
        raise ConfigError(
            f"{where}.gpu_request = {form!r} is not a way to ask for GPUs. Choose one of: {choices}."
        )
    if table.get("gpu_type") is not None and (table.get("gres") or not table.get("gpus_per_task")):
        why = "a full gres string names its own type" if table.get("gres") else "gpus_per_task is 0"
        raise ConfigError(
            f"{where} has gpu_type = {table['gpu_type']!r} but {why}: a type goes with gpus_per_task = N "
            f'(gres = "gpu:{table["gpu_type"]}:N" is the same request as a full string).'
        )
    if table.get("gres") and form != "gres":
        raise ConfigError(
            f'{where} has both gres = {table["gres"]!r} and gpu_request = "{form}": keep one '
            f'(a full gres string is sent as --gres, so it needs gpu_request = "gres").'
        )
    doubled = sorted(_GPU_OPTIONS & set(table.get("sbatch_extra", {})))
    if doubled:
        raise ConfigError(
            f"{where}.sbatch_extra sets {', '.join(doubled)}: GPUs are asked for by gpus_per_task "
            "and gpu_request (or gres) only, so that exactly one form reaches sbatch."
        )


def gpu_parameters(res: Resources) -> dict[str, Any]:
    """The one GPU request of a stage, as submitit parameters ({} for a CPU stage)."""
    if res.gres:
        return {"gres": res.gres}
    if not res.gpus_per_task:
        return {}
    n: int | str = res.gpus_per_task
    if res.gpu_type:
        n = f"{res.gpu_type}:{n}"  # Slurm's [type:]count, in every form
    forms: dict[str, dict[str, Any]] = {  # gpus-per-task: Slurm wants a task count with it
        "gres": {"gres": f"gpu:{n}"},
        "gpus-per-task": {"gpus_per_task": n, "ntasks_per_node": 1},
        "gpus": {"additional_parameters": {"gpus": n}},
    }
    return forms[res.gpu_request]


def load_profile(name_or_path: str) -> ClusterProfile:
    """A profile by name (slurm/profiles/<name>.toml) or by path to a .toml file.

    Raises:
        ConfigError: unknown profile, unknown keys or wrong types, listing the valid choices.
    """
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PROFILES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise ConfigError(
            f"Unknown profile {name_or_path!r}. Choose from: {', '.join(available_profiles())}, "
            "or pass a path to a .toml file."
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"Unknown key(s) {', '.join(unknown)} in {path}. Valid keys: {', '.join(sorted(_TOP_KEYS))}."
        )
    setup = data.get("setup", [])
    if not isinstance(setup, list) or not all(isinstance(s, str) for s in setup):
        raise ConfigError(f"setup in {path} must be a list of shell lines.")
    if data.get("device", "auto") not in DEVICES:
        raise ConfigError(
            f"device = {data['device']!r} in {path} is not a device. Choose one of: {', '.join(DEVICES)}."
        )
    return ClusterProfile(
        name=path.stem,
        embed=_resources(data.get("embed", {}), f"{path.name} [embed]"),
        merge=_resources(data.get("merge", {}), f"{path.name} [merge]"),
        setup=tuple(setup),
        model_cache=data.get("model_cache"),
        python=data.get("python"),
        device=data.get("device"),
    )


def sbatch_parameters(res: Resources, job_name: str, setup: tuple[str, ...]) -> dict[str, Any]:
    """submitit SlurmExecutor parameters for one stage (keys are submitit's names)."""
    params: dict[str, Any] = {
        "job_name": job_name,
        "time": res.timeout_min,
        "cpus_per_task": res.cpus_per_task,
        "array_parallelism": res.array_parallelism,
        "signal_delay_s": res.signal_delay_s,
        "setup": list(setup),
        "stderr_to_stdout": False,
    }
    optional = {
        "partition": res.partition,
        "account": res.account,
        "qos": res.qos,
        "constraint": res.constraint,
        "exclude": res.exclude,
        "mem": f"{res.mem_gb:g}GB" if res.mem_gb else None,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    gpus = gpu_parameters(res)
    extra = {**gpus.pop("additional_parameters", {}), **res.sbatch_extra}
    params.update(gpus)
    if extra:
        params["additional_parameters"] = extra
    return params


def with_overrides(profile: ClusterProfile, **embed_overrides: Any) -> ClusterProfile:
    """A copy of ``profile`` whose embed resources take ``embed_overrides`` (the profile file is untouched)."""
    return replace(profile, embed=replace(profile.embed, **embed_overrides))
