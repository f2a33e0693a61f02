"""Which tests exercise which real part, read from the test sources (docs/TESTING.md keeps the counts).

    python3 tests/real_services.py            # the count per real part
    python3 tests/real_services.py --list     # and every test, per part
    python3 tests/real_services.py --root /path/to/another/checkout

A test counts for a part when it uses it: tests/slurm runs on both Slurm versions; the `sshd` fixture;
the `browser` fixture (Chromium); the real CLI (local jobs with the real model) called directly or
through a shared run; the downstream readers through the `exported` fixture.
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

CLI_CALLS = ("jobs_cli(", "make_cli(", "run_as_printed(", "submitted_then_cancelled(")
RUN_FIXTURES = {  # fixtures that hand a test a run the real CLI made
    "merged_run",
    "copied_run",
    "demo_map",
    "prompt_run",
    "fetched",
    "months",
    "exported",
    "cluster_run",
    "long_corpus",
}
PARTS = (
    "Slurm 22.05 and 26.05",
    "sshd + rsync",
    "Chromium",
    "the real CLI (local jobs, real model)",
    "downstream readers (pyarrow, DuckDB, LanceDB, FAISS, datasets)",
)


def parts_of(path: Path, source: str, test: ast.FunctionDef) -> list[str]:
    """The real parts one test function uses."""
    body = ast.get_source_segment(source, test) or ""
    args = {a.arg for a in test.args.args}
    uses = [
        "tests/slurm" in path.as_posix(),
        "sshd" in args or "sshd" in body,
        "browser" in args,
        any(call in body for call in CLI_CALLS) or bool(args & RUN_FIXTURES),
        "exported" in args,
    ]
    return [part for part, used in zip(PARTS, uses, strict=True) if used]


def real_part_tests(root: Path) -> dict[str, list[str]]:
    """Per real part, the tests (path::name) that use it."""
    tests: dict[str, list[str]] = defaultdict(list)
    for path in sorted((root / "tests").rglob("test_*.py")):
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                for part in parts_of(path.relative_to(root), source, node):
                    tests[part].append(f"{path.relative_to(root)}::{node.name}")
    return tests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--list", action="store_true", help="every test, per part")
    args = parser.parse_args()
    tests = real_part_tests(args.root)
    for part in PARTS:
        print(f"{len(tests[part]):4d}  {part}")
        if args.list:
            print("".join(f"        {name}\n" for name in tests[part]), end="")


if __name__ == "__main__":
    main()
