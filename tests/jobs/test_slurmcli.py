"""Parsing what Slurm prints: explicit fields only; an unknown state or line is an error, not "missing"."""

import pytest

from slurm.slurmcli import (
    SlurmCommandError,
    TRANSIENT,
    expand_task_ids,
    parse_max_array_size,
    parse_sacct,
    parse_squeue,
)


def test_squeue_rows_expand_pending_arrays_and_keep_reasons():
    text = "12_[0-2,5%2]|PENDING|Nodes required for job are DOWN, DRAINED or reserved\n13|RUNNING|None\n"
    states = parse_squeue(text)
    assert sorted(states) == ["12_0", "12_1", "12_2", "12_5", "13"]
    assert states["12_5"].reason.startswith("Nodes required") and states["13"].reason == ""
    assert states["13"].alive and states["12_0"].state == "PENDING"


def test_sacct_tells_a_task_cancelled_before_it_started():
    states = parse_sacct(
        "7_0|CANCELLED by 0|0:0|None|None assigned\n7_1|FAILED|1:0|2026-11-23T10:00:00|a100-1\n"
        "8|TIMEOUT|0:15|Unknown|None assigned\n"
    )
    assert states["7_0"].state == "CANCELLED" and not states["7_0"].started
    assert states["7_1"].reason == "exit 1:0" and states["7_1"].started and not states["7_1"].alive
    assert states["7_1"].node == "a100-1" and states["7_0"].node == ""


def test_sacct_names_the_node_a_requeued_task_was_lost_with():
    # sacct -D: one row per attempt, oldest first (as Slurm 22.05 and 26.05 print them)
    states = parse_sacct(
        "9_2|NODE_FAIL|0:0|2026-12-06T20:22:38|a100-2\n9_2|RUNNING|0:0|2026-12-06T20:24:50|v100-1\n"
        "9_3|NODE_FAIL|1:0|2026-12-06T20:22:38|a100-2\n9_3|PENDING|0:0|Unknown|None assigned\n"
    )
    assert states["9_2"].state == "RUNNING" and states["9_2"].node == "v100-1"
    assert states["9_2"].lost_nodes == ("a100-2",) and states["9_3"].lost_nodes == ("a100-2",)
    assert states["9_3"].alive and not states["9_3"].started


def test_unknown_states_and_unreadable_lines_name_the_command_and_the_line():
    with pytest.raises(
        SlurmCommandError, match=r"squeue printed a job state the kit does not know, 'WIBBLE'"
    ):
        parse_squeue("5|WIBBLE|None\n")
    with pytest.raises(
        SlurmCommandError, match=r"sacct printed a line the kit cannot read: 'SLUID 5 RUNNING'"
    ):
        parse_sacct("SLUID 5 RUNNING\n")


def test_controller_outages_are_transient_and_config_is_parsed():
    assert TRANSIENT.search(
        "squeue: error: slurm_load_jobs error: Unable to contact slurm controller (connect failure)"
    )
    assert not TRANSIENT.search("sbatch: error: Invalid partition name specified")
    assert expand_task_ids("42") == ["42"] and parse_max_array_size("MaxArraySize           = 5\n") == 5
