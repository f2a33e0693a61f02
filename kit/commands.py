"""Every command the kit prints for a person to run, built in one place and quoted with shlex.

A printed command must work when pasted as is, on run folders with spaces, quotes or
non-ASCII characters: values are quoted with ``shlex.quote``, empty values are left out.
"""

from __future__ import annotations

import shlex


def make_command(target: str, **variables: object) -> str:
    """``make TARGET VAR=value ...`` with each value shell-quoted; None and "" are left out.

    >>> make_command("status", RUN=Path("runs/my run"))
    "make status RUN='runs/my run'"
    """
    parts = ["make", target]
    for name, value in variables.items():
        if value is None or value == "":
            continue
        if isinstance(value, (list, tuple, set)):
            value = " ".join(str(v) for v in value)
        parts.append(f"{name}={shlex.quote(str(value))}")
    return " ".join(parts)


def shell_command(*argv: object) -> str:
    """Any other command line (``python -m jobs merge --run DIR``), each word quoted."""
    return " ".join(shlex.quote(str(a)) for a in argv)


def index_ranges(indices) -> str:
    """``{0, 1, 2, 3, 7}`` -> ``0-3 7``: shard lists stay short, and REDO= reads them back."""
    values = sorted(set(int(i) for i in indices))
    parts, start = [], None
    for k, value in enumerate(values):
        if start is None:
            start = value
        if k + 1 == len(values) or values[k + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return " ".join(parts)
