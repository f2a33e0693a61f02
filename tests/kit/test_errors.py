"""kit/errors.py: every error the kit raises on purpose is a KitError, and the CLI prints one as a line."""

from __future__ import annotations

import inspect

from kit import errors
from tests.helpers import jobs_cli


def test_every_named_error_is_a_kit_error_with_a_docstring():
    named = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(named) >= 12
    for cls in named:
        assert issubclass(cls, errors.KitError) and cls.__doc__, cls
    for cls in (errors.ShardGapError, errors.ShardMismatchError, errors.ShardDataError):
        assert issubclass(cls, errors.MergeError)  # a merge refusal is caught as one, whatever its cause


def test_the_cli_prints_a_kit_error_as_one_line_without_a_traceback(tmp_path):
    """What the base class promises: exit 2 and ``error: ...`` naming the folder, never a traceback."""
    missing = tmp_path / "no such run é"
    proc = jobs_cli("merge", "--run", str(missing), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: ") and str(missing) in proc.stderr, proc.stderr
