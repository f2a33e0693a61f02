"""A stand-in for the lent GPU machine's Python, to rehearse the device command on this CPU.

The machine has its own python3 and packages (device_packages.txt) and nothing else: no network,
none of the kit's other dependencies (submitit, orjson, zstandard, umap...), none of the demo
packages. ``device_site`` links into one folder only the installed distributions the machine has,
and what those need as installed here (local versions differ: huggingface_hub 2.x needs httpx2
where the machine's 1.33 uses httpx); ``python3_shim`` writes a ``python3`` that runs this
environment's interpreter without its site-packages (``-S``), so that with ``PYTHONPATH`` set to
that folder an import of anything else fails here as it would there.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement

PACKAGES = Path(__file__).with_name("device_packages.txt")


def normalized(name: str) -> str:
    """PEP 503: lower case, runs of '-', '_', '.' as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def device_packages() -> set[str]:
    lines = PACKAGES.read_text().splitlines()
    return {normalized(line) for line in lines if line.strip() and not line.startswith("#")}


def allowed_here() -> tuple[dict[str, importlib.metadata.Distribution], dict[str, str]]:
    """The installed distributions the device has, plus what they require here; the latter as
    ``{name: the device package that brought it}``."""
    installed = {normalized(d.metadata["Name"]): d for d in importlib.metadata.distributions()}
    allowed = {n: d for n, d in installed.items() if n in device_packages()}
    brought: dict[str, str] = {}
    todo = list(allowed)
    while todo:
        name = todo.pop()
        for text in allowed[name].requires or []:
            req = Requirement(text)
            dep = normalized(req.name)
            if dep in allowed or dep not in installed:
                continue
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            allowed[dep], brought[dep] = installed[dep], name
            todo.append(dep)
    return allowed, brought


def device_site(folder: Path) -> dict[str, str]:
    """Link the top-level files and folders of the allowed distributions into ``folder``; returns the
    distributions allowed only as another's requirement (see ``allowed_here``)."""
    allowed, brought = allowed_here()
    folder.mkdir(parents=True, exist_ok=True)
    for dist in allowed.values():
        tops = {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__", "bin")}
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            link = folder / top
            if source.exists() and not link.exists():
                link.symlink_to(source)
    return brought


def python3_shim(folder: Path) -> Path:
    """``folder/python3``: this interpreter without site-packages (so only PYTHONPATH adds any)."""
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "python3"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    shim.chmod(0o755)
    return shim


def device_environ(bin_dir: Path, site: Path, out: Path) -> dict[str, str]:
    """The environment the device command runs in: the shim first on PATH, the device's packages
    only, ``OUT`` (the folder whose files come back)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(site), OUT=str(out))
    return env


def device_tree(root: Path, repo: Path, carried: str) -> Path:
    """``root`` laid out as the device's copy of the tree: links to the repository's entries, with the
    folder ``carried`` (under bench/) left for the pack; returns that folder's path under ``root``."""
    carried_path = root / carried
    top, _, rest = carried.partition("/")
    root.mkdir(parents=True)
    for entry in repo.iterdir():
        if entry.name in (".git", ".venv", top) or entry.name.startswith("."):
            continue
        (root / entry.name).symlink_to(entry)
    (root / top).mkdir()
    for entry in (repo / top).iterdir():
        if not entry.name.startswith((rest, "__pycache__")):
            (root / top / entry.name).symlink_to(entry)
    return carried_path
