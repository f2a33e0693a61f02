import pytest
from hypothesis import given, strategies as st

from embedder.config import ShardSpec
from jobs.plan import plan_shards
from jobs.slurmjobs import afterok, parse_max_array_size, windows
from kit.errors import ConfigError
from slurm.profiles import available_profiles, load_profile, sbatch_parameters


def test_shipped_profiles_load():
    assert {"local", "testcluster", "example-university"} <= set(available_profiles())
    site = load_profile("example-university")
    assert site.embed.gpus_per_task == 1 and site.model_cache and "export HF_HUB_OFFLINE=1" in site.setup


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"Unknown profile 'testclustr'. Choose from: .*testcluster.*\.toml file"):
        load_profile("testclustr")


def test_unknown_key_and_wrong_type_are_named(tmp_path):
    bad = tmp_path / "site.toml"
    bad.write_text('[embed]\npartition = "gpu"\ngpu_per_task = 1\n')
    with pytest.raises(ConfigError, match=r"Unknown key\(s\) gpu_per_task in site.toml \[embed\]. Valid keys: partition"):
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
