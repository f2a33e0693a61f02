"""pyproject.toml and environment.yml list the same runtime dependencies."""

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_conda_environment_matches_pyproject():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    text = (REPO / "environment.yml").read_text()
    pip_section = text.split("- pip:", 1)[1]
    conda_pip = [
        m.strip() for m in re.findall(r"^\s+- (.+)$", pip_section, flags=re.M) if m.strip() != "-e ."
    ]
    assert sorted(conda_pip) == sorted(pyproject)
