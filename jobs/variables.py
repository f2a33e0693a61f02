"""The Make variables: each one's name, how its text is read, its help, and where its value goes.

Make hands every variable given on its command line to the recipe's environment, so the Makefile
passes none by hand: ``python -m jobs --make VERB`` reads the variables of VERB from the
environment (an empty value means "not given") and refuses a command-line variable that no verb
knows, naming the nearest known one (``SHRADS=16``: did you mean ``SHARDS``?). The stage table
(jobs/stages.py) adds the variables of the optional stages. Pure: no model, no torch.
"""

from __future__ import annotations

import argparse
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

from kit.errors import ConfigError

MAKEFILE_OWN = ("V", "PYTHON", "TORCH")  # read by the Makefile itself, never by the kit


@dataclass(frozen=True)
class Variable:
    """One Make variable, and the ``python -m jobs`` option it becomes (``SHARDS`` -> ``--shards``)."""

    name: str  # as Make takes it: SHARDS
    parse: Callable[[str], Any]  # the text given -> its value; "" never reaches it (empty: not given)
    help: str
    goes: str = "request"  # where submit puts it: request | identity | compute | corpus | stage:<name>
    key: str = ""  # the field (or task keyword) it sets there; default: the name in lower case
    bare: bool = False  # a 1/0 switch a person may also pass bare (--wait)

    @property
    def flag(self) -> str:
        """The command-line option: ``--max-seq-length`` for ``MAX_SEQ_LENGTH``."""
        return "--" + self.name.lower().replace("_", "-")

    @property
    def dest(self) -> str:
        """The argparse destination (``args.max_seq_length``): the Make variable's name in lower case."""
        return self.name.lower()

    @property
    def field(self) -> str:
        """The field (or task keyword) the value sets."""
        return self.key or self.name.lower()

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add this variable's option to ``parser`` (default None: not given)."""
        extra: dict[str, Any] = {"nargs": "?", "const": True} if self.bare else {}
        parser.add_argument(
            self.flag,
            dest=self.dest,
            type=self.parse,
            default=None,
            help=f"{self.help} ({self.name}=)",
            **extra,
        )


# ---------------------------------------------------------------- how a Make value is read


def text(value: str) -> str | None:
    """Any text; empty is not given."""
    return value or None


def path_text(value: str) -> str | None:
    """A path as given ("~" expanded); empty is not given."""
    return str(Path(value).expanduser()) if value else None


def whole(variable: str, minimum: int = 1) -> Callable[[str], int | None]:
    """A whole number of at least ``minimum``, refused naming ``variable``."""

    def parse(value: str) -> int | None:
        if not value:
            return None
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{variable}={value!r} is not a whole number.") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{variable}={value} must be at least {minimum}.")
        return number

    return parse


ON = ("1", "true", "yes", "on")
OFF = ("0", "false", "no", "off")


def switch(variable: str) -> Callable[[str], bool | None]:
    """1/0 (also true/false, yes/no, on/off), refused naming ``variable``."""

    def parse(value: str) -> bool | None:
        if not value:
            return None
        if value.lower() in ON:
            return True
        if value.lower() in OFF:
            return False
        raise argparse.ArgumentTypeError(f"{variable}={value!r}: use 1 or 0.")

    return parse


def choice(variable: str, choices: tuple[str, ...], off: bool = False) -> Callable[[str], str | bool | None]:
    """One of ``choices``; with ``off``, 0 (or off) gives False: the stage is turned off."""

    def parse(value: str) -> str | bool | None:
        if not value:
            return None
        if off and value.lower() in OFF:
            return False
        if value not in choices:
            zero = " (0: none)" if off else ""
            raise argparse.ArgumentTypeError(f"{variable}={value!r}: choose from {', '.join(choices)}{zero}.")
        return value

    return parse


def names(value: str) -> tuple[str, ...] | None:
    """A comma-separated list of names (``title,text``)."""
    found = tuple(f.strip() for f in value.split(",") if f.strip())
    return found or None


# ---------------------------------------------------------------- what Make was given


def command_line_names(makeflags: str) -> list[str]:
    """The variables set on make's command line, from the ``MAKEFLAGS`` make gives its recipes.

    ``MAKEFLAGS`` ends with `` -- NAME=value ...``; a value's spaces are escaped with a backslash.
    """
    _, sep, assignments = makeflags.partition(" -- ")
    if not sep:
        assignments = makeflags[3:] if makeflags.startswith("-- ") else ""
    words = re.split(r"(?<!\\) +", assignments.strip())
    return [w.split("=", 1)[0] for w in words if "=" in w and w.split("=", 1)[0].isidentifier()]


def refuse_unknown(given: list[str], known: set[str], verb: str) -> None:
    """Refuse a variable no verb knows (a typo would otherwise be ignored), naming the nearest known one."""
    unknown = [name for name in given if name not in known and name not in MAKEFILE_OWN]
    if not unknown:
        return
    lines = []
    for name in unknown:
        near = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.6)
        lines.append(
            f"{name}=: the kit has no such variable" + (f"; did you mean {near[0]}=?" if near else ".")
        )
    raise ConfigError(
        "\n".join(lines) + f"\nNothing was done. make help lists the verbs; docs/OPTIONS.md lists every "
        f"variable of make {verb}."
    )
