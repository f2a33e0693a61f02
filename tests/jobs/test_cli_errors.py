"""Errors argparse itself raises reach the user as one line naming the Make variable."""

from tests.helpers import jobs_cli


def test_a_missing_value_names_the_make_variable(tmp_path):
    proc = jobs_cli("submit", "--run", str(tmp_path / "run"), "--shards", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: SHARDS: expected one argument"], proc.stderr


def test_an_unknown_verb_lists_the_verbs_in_one_line():
    proc = jobs_cli("sumbit", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: invalid choice: 'sumbit'") and "'submit'" in lines[0]
