"""Parsing what Slurm prints: explicit fields only; an unknown state or line is an error, not "missing"."""

import pytest

from slurm.commands import (
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
        "7_0|CANCELLED by 0|0:0|None\n7_1|FAILED|1:0|2026-11-23T10:00:00\n8|TIMEOUT|0:15|Unknown\n"
    )
    assert states["7_0"].state == "CANCELLED" and not states["7_0"].started
    assert states["7_1"].reason == "exit 1:0" and states["7_1"].started and not states["7_1"].alive


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
