import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.plan import pending_shards, plan_shards
from slurm.local import assign_workers
from kit.errors import ConfigError


@given(st.integers(1, 10_000_000), st.integers(1, 5000))
def test_plan_tiles_rows_exactly_once(n_rows, n_shards):
    plan = plan_shards(n_rows, n_shards)
    assert plan[0].start == 0 and plan[-1].stop == n_rows
    assert all(a.stop == b.start for a, b in zip(plan, plan[1:]))  # ranges touch
    assert all(s.stop > s.start for s in plan)  # none empty
    sizes = {s.rows for s in plan}
    assert max(sizes) - min(sizes) <= 1
    assert [s.index for s in plan] == list(range(len(plan)))
    assert len(plan) == min(n_rows, n_shards)


@given(st.integers(1, 500), st.integers(1, 64), st.sets(st.integers(0, 70)))
def test_pending_and_workers_cover_each_shard_once(n_shards, n_workers, done):
    plan = plan_shards(10_000, n_shards)
    pending = pending_shards(plan, done)
    assert {s.index for s in pending} == {s.index for s in plan} - done
    groups = assign_workers(pending, n_workers)
    flat = sorted(s.index for g in groups for s in g)
    assert flat == [s.index for s in pending]
    assert all(groups) and len(groups) <= n_workers


costs_strategy = st.lists(st.floats(0.5, 5000, allow_nan=False), min_size=1, max_size=3000)


@given(costs_strategy, st.integers(1, 300))
def test_cost_plan_tiles_rows_and_bounds_the_largest_shard(costs, n_shards):
    costs = np.array(costs)
    plan = plan_shards(costs, n_shards)
    assert len(plan) == min(len(costs), n_shards)
    assert plan[0].start == 0 and plan[-1].stop == len(costs)
    assert all(a.stop == b.start for a, b in zip(plan, plan[1:]))  # ranges touch
    assert all(s.stop > s.start for s in plan)  # none empty
    assert [s.index for s in plan] == list(range(len(plan)))
    shard_costs = [costs[s.start : s.stop].sum() for s in plan]
    assert max(shard_costs) <= costs.sum() / len(plan) + costs.max() + 1e-6 * costs.sum()  # the stated bound


@given(st.integers(1, 20_000), st.integers(1, 64))
def test_equal_costs_give_rows_within_one(n_rows, n_shards):
    plan = plan_shards(np.ones(n_rows), n_shards)
    assert max(s.rows for s in plan) - min(s.rows for s in plan) <= 1


def test_cost_plan_follows_the_cost_not_the_rows():
    costs = np.concatenate([np.full(1000, 30.0), np.full(1000, 10.0)])  # the first half costs 3x more
    plan = plan_shards(costs, 4)
    assert [(s.start, s.stop) for s in plan] == [(0, 333), (333, 667), (667, 1000), (1000, 2000)]
    assert plan_shards(2000, 4) == plan_shards(np.ones(2000), 4)


def test_bad_costs_are_refused():
    for bad in (np.array([]), np.array([1.0, np.nan]), np.array([1.0, -1.0]), np.ones((2, 2))):
        with pytest.raises(ConfigError):
            plan_shards(bad, 2)
