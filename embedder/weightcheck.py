"""Check a model folder's weight files at submit, from their headers: a cut-short file is refused then,
not by every task of the run later (``SafetensorError: incomplete metadata``).

A ``.safetensors`` file is an 8-byte little-endian header length, a JSON header giving each tensor's
byte range, then the data: its size must be exactly ``8 + header + last data offset``. A
``pytorch_model*.bin`` is a zip archive whose central directory sits at its end, so a cut
file no longer opens. Only headers are read: the check costs milliseconds whatever the model.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from kit.commands import make_command, shell_command
from kit.errors import ConfigError

MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit on the JSON header


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole safetensors file, or None."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"it holds {size} bytes, less than the 8-byte header length"
        (header_bytes,) = struct.unpack("<Q", head)
        if header_bytes > MAX_HEADER_BYTES or 8 + header_bytes > size:
            return f"its header says {header_bytes:,} bytes of metadata but the file holds {size:,} bytes"
        try:
            header = json.loads(f.read(header_bytes))
        except ValueError as err:
            return f"its header is not valid JSON ({err})"
    ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"]
    expected = 8 + header_bytes + max(ends, default=0)
    if size != expected:
        return f"its header describes {expected:,} bytes but the file holds {size:,} bytes"
    return None


def torch_zip_problem(path: Path) -> str | None:
    """Why a ``pytorch_model*.bin`` is not a whole archive, or None (an old non-zip pickle is not checked)."""
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return None
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except zipfile.BadZipFile as err:
        return f"its zip archive does not open ({err})"
    return None


def weight_problems(folder: Path) -> list[tuple[Path, str]]:
    """(file, why) for each damaged weight file under ``folder``."""
    problems = []
    checks = (("*.safetensors", safetensors_problem), ("pytorch_model*.bin", torch_zip_problem))
    for pattern, check in checks:
        for path in sorted(Path(folder).rglob(pattern)):
            if path.is_file() and (why := check(path)) is not None:
                problems.append((path, why))
    return problems


def check_weights(folder: Path, model: str, profile: str | None = None) -> None:
    """Refuse a model whose weight files are cut short or damaged, naming each and how to stage it again.

    Raises:
        ConfigError: naming the files, what is wrong, and ``make stage-model``.
    """
    problems = weight_problems(folder)
    if not problems:
        return
    lines = [f"Model {model}: weight file {path} is damaged: {why}." for path, why in problems]
    if Path(model).expanduser().is_dir():
        lines.append(
            "Copy the model folder again from its source, or stage a hub model: "
            f"{make_command('stage-model', MODEL='<hub name>', PROFILE=profile)}"
        )
    else:  # a hub cache: remove the damaged blobs so staging downloads them again
        blobs = [path.resolve() for path, _ in problems]
        lines.append(
            f"Remove it and stage the model again: {shell_command('rm', *blobs)} && "
            f"{make_command('stage-model', MODEL=model, PROFILE=profile)}"
        )
    raise ConfigError("\n".join(lines))
