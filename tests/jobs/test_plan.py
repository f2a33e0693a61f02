from hypothesis import given, strategies as st

from jobs.plan import assign_workers, pending_shards, plan_shards


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
