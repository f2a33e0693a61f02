"""kit/commands.py: every printed command works when pasted into a shell, on awkward folder names."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from jobs.settings import parse_redo
from kit.commands import index_ranges, make_command, shell_command

AWKWARD = ["runs/my run", "runs/it's é", 'runs/"quoted" $HOME `x` ;ls', "runs/tab\there", "-leading-dash"]


def words_bash_sees(command: str) -> list[str]:
    """The argv a real bash builds from ``command`` as pasted (its first word replaced by printf)."""
    _, _, rest = command.partition(" ")
    out = subprocess.run(["bash", "-c", f"printf '%s\\0' {rest}"], capture_output=True, text=True, check=True)
    return out.stdout.split("\0")[:-1]


@pytest.mark.parametrize("folder", AWKWARD)
def test_make_command_survives_the_shell(folder):
    command = make_command("status", RUN=Path(folder), REDO=[3, 5], WAIT=1)
    assert command.startswith("make status ")
    assert words_bash_sees(command) == ["status", f"RUN={folder}", "REDO=3 5", "WAIT=1"]


def test_empty_and_unset_values_are_left_out():
    assert make_command("submit", RUN="r", CORPUS="", MODEL=None, SHARDS=0) == "make submit RUN=r SHARDS=0"
    assert make_command("help") == "make help"


@pytest.mark.parametrize("folder", AWKWARD)
def test_shell_command_survives_the_shell(folder):
    command = shell_command("python", "-m", "jobs", "merge", "--run", Path(folder))
    assert words_bash_sees(command) == ["-m", "jobs", "merge", "--run", folder]


@pytest.mark.parametrize(
    ("indices", "text"),
    [
        ([], ""),
        ([4], "4"),
        ({0, 1, 2, 3, 7}, "0-3 7"),
        ([9, 8, 1, 1, 2], "1-2 8-9"),
        (range(0, 10, 2), "0 2 4 6 8"),
    ],
)
def test_index_ranges_are_short_and_redo_reads_them_back(indices, text):
    assert index_ranges(indices) == text
    assert parse_redo(text) == tuple(sorted(set(indices)))
