import re
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from kit.shardfile import ShardSpec
from jobs.plan import plan_shards
from slurm.cluster import afterok, render_sbatch, windows
from slurm.slurmcli import parse_max_array_size
from kit.errors import ConfigError
from slurm.profiles import available_profiles, gpu_parameters, load_profile, sbatch_parameters


def test_shipped_profiles_load():
    assert {"local", "testcluster", "example-university"} <= set(available_profiles())
    site = load_profile("example-university")
    assert site.embed.gpus_per_task == 1 and site.model_cache and "export HF_HUB_OFFLINE=1" in site.setup


def test_a_profile_device_is_the_tasks_device_unless_the_command_gives_one(tmp_path):
    from embedder.config import ComputeSettings
    from jobs.settings import SubmitRequest, compute_settings

    cpu_site = load_profile("testcluster")  # placeholder GPUs: the tasks compute on the CPU on purpose
    assert cpu_site.device == "cpu" and load_profile("example-university").device is None
    asked = SubmitRequest(run_dir=tmp_path, compute={"device": "cuda"})
    assert compute_settings(SubmitRequest(run_dir=tmp_path), ComputeSettings(), cpu_site).device == "cpu"
    assert compute_settings(asked, ComputeSettings(), cpu_site).device == "cuda"
    assert compute_settings(SubmitRequest(run_dir=tmp_path), None, None).device == "auto"
    bad = tmp_path / "site.toml"
    bad.write_text('device = "gpu"\n')
    with pytest.raises(
        ConfigError, match=r"device = 'gpu' in .*site.toml is not a device. Choose one of: auto, cuda"
    ):
        load_profile(str(bad))


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(
        ConfigError, match=r"Unknown profile 'testclustr'. Choose from: .*testcluster.*\.toml file"
    ):
        load_profile("testclustr")


def test_unknown_key_and_wrong_type_are_named(tmp_path):
    bad = tmp_path / "site.toml"
    bad.write_text('[embed]\npartition = "gpu"\ngpu_per_task = 1\n')
    with pytest.raises(
        ConfigError, match=r"Unknown key\(s\) gpu_per_task in site.toml \[embed\]. Valid keys: partition"
    ):
        load_profile(str(bad))
    bad.write_text('[embed]\ncpus_per_task = "eight"\n')
    with pytest.raises(ConfigError, match=r"\[embed\].cpus_per_task = 'eight' should be int"):
        load_profile(str(bad))
    bad.write_text('partition = "gpu"\n')
    with pytest.raises(ConfigError, match="Unknown key"):
        load_profile(str(bad))


def test_sbatch_parameters_map_profile_to_submitit_names():
    p = load_profile("example-university")
    params = sbatch_parameters(p.embed, "wiki-embed", p.setup)
    assert params["gres"] == "gpu:1" and params["mem"] == "32GB" and params["time"] == 240
    assert params["partition"] == "gpu" and params["account"] == "my-lab" and params["signal_delay_s"] == 120
    assert params["setup"][0].startswith("module load")


@given(st.integers(1, 5000), st.integers(1, 2000))
def test_windows_cover_every_shard_once_within_max_array_size(n_shards, max_array):
    plan = plan_shards(100_000, n_shards)
    ws = windows(plan, max_array)
    assert [s for w in ws for s in w] == plan
    assert all(0 < len(w) <= max_array for w in ws)
    assert len(ws) == -(-len(plan) // max_array)


def test_dependency_strings_and_config_parsing():
    assert afterok(["12", "15"]) == "afterok:12:15"
    assert afterok([]) is None  # nothing pending: the merge gets no dependency at all
    assert parse_max_array_size("MaxArraySize            = 5\nMaxJobCount = 10000\n") == 5
    assert parse_max_array_size("no such line") == 1001
    assert windows([ShardSpec(0, 0, 1)], 5) == [[ShardSpec(0, 0, 1)]]


GPU_FORMS = {
    "gres": "--gres=gpu:2",
    "gpus-per-task": "--gpus-per-task=2",
    "gpus": "--gpus=2",
}  # one task per job
GPU_LINE = re.compile(r"^#SBATCH --(gres|gpus|gpus-per-task|gpus-per-node|gpus-per-socket)=", re.M)


def site_profile(tmp_path, embed: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(f'[embed]\npartition = "gpu"\ngpus_per_task = 2\n{embed}\n[merge]\ncpus_per_task = 1\n')
    return path


@pytest.mark.parametrize("form", GPU_FORMS)
def test_each_gpu_request_form_emits_exactly_that_one_option(tmp_path, form):
    profile = load_profile(str(site_profile(tmp_path, f'gpu_request = "{form}"')))
    script = render_sbatch(tmp_path / "run", profile, "embed", 3, python="/venv/bin/python")
    assert GPU_LINE.findall(script) == [GPU_FORMS[form].split("=")[0][2:]]
    assert f"#SBATCH {GPU_FORMS[form]}\n" in script
    merge = render_sbatch(tmp_path / "run", profile, "merge", 1, python="/venv/bin/python")
    assert GPU_LINE.findall(merge) == []  # the merge asks for no GPU


def test_a_full_gres_string_is_sent_as_is(tmp_path):
    profile = load_profile(str(site_profile(tmp_path, 'gres = "gpu:a100:1"')))
    assert gpu_parameters(profile.embed) == {"gres": "gpu:a100:1"}
    script = render_sbatch(tmp_path / "run", profile, "embed", 1, python="/venv/bin/python")
    assert GPU_LINE.findall(script) == ["gres"] and "#SBATCH --gres=gpu:a100:1\n" in script


def test_gpu_request_defaults_to_gres_and_keeps_other_extras(tmp_path):
    profile = load_profile(str(site_profile(tmp_path, '[embed.sbatch_extra]\nreservation = "lab"')))
    params = sbatch_parameters(profile.embed, "x-embed", ())
    assert params["gres"] == "gpu:2" and params["additional_parameters"] == {"reservation": "lab"}
    gpus = load_profile(
        str(site_profile(tmp_path, 'gpu_request = "gpus"\n[embed.sbatch_extra]\nreservation = "lab"'))
    )
    assert sbatch_parameters(gpus.embed, "x-embed", ())["additional_parameters"] == {
        "gpus": 2,
        "reservation": "lab",
    }
    assert "gres" not in sbatch_parameters(gpus.embed, "x-embed", ())


@pytest.mark.parametrize(
    "embed,message",
    [
        (
            'gpu_request = "gpus-per-node"',
            r"gpu_request = .gpus-per-node. is not a way to ask for GPUs\. Choose one of: "
            r'"gres" \(--gres=gpu:N\), "gpus-per-task" \(--gpus-per-task=N\), "gpus"',
        ),
        (
            'gpu_request = "gpus"\ngres = "gpu:a100:1"',
            r'has both gres = .gpu:a100:1. and gpu_request = "gpus": keep one',
        ),
        (
            "[embed.sbatch_extra]\ngpus-per-node = 1",
            r"sbatch_extra sets gpus-per-node: GPUs are asked for by gpus_per_task",
        ),
    ],
)
def test_a_second_or_unknown_gpu_request_is_refused_naming_the_key(tmp_path, embed, message):
    with pytest.raises(ConfigError, match=message):
        load_profile(str(site_profile(tmp_path, embed)))


@pytest.mark.parametrize(
    "form,option",
    [("gres", "--gres=gpu:v100:2"), ("gpus-per-task", "--gpus-per-task=v100:2"), ("gpus", "--gpus=v100:2")],
)
def test_gpu_type_types_the_one_gpu_request_and_constraint_asks_for_features(tmp_path, form, option):
    embed = f'gpu_request = "{form}"\ngpu_type = "v100"\nconstraint = "v100|a100"'
    profile = load_profile(str(site_profile(tmp_path, embed)))
    script = render_sbatch(tmp_path / "run", profile, "embed", 3, python="/venv/bin/python")
    assert GPU_LINE.findall(script) == [option.split("=")[0][2:]] and f"#SBATCH {option}\n" in script
    assert "#SBATCH --constraint='v100|a100'\n" in script  # quoted by submitit; sbatch unquotes it


@pytest.mark.parametrize(
    "embed,message",
    [
        (
            'gres = "gpu:a100:1"\ngpu_type = "v100"',
            r"gpu_type = 'v100' but a full gres string names its own type",
        ),
        ('gpus_per_task = 0\ngpu_type = "v100"', r"gpu_type = 'v100' but gpus_per_task is 0"),
    ],
)
def test_a_gpu_type_without_a_count_or_beside_a_full_gres_is_refused(tmp_path, embed, message):
    path = tmp_path / "site.toml"
    path.write_text(f'[embed]\npartition = "gpu"\n{embed}\n')
    with pytest.raises(ConfigError, match=message):
        load_profile(str(path))
