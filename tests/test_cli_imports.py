"""The CLI starts without the model stack: `make status`, a refused plan or a typo never import torch,
transformers, sentence-transformers, umap or numba (issue 32).

Two checks: the eager import graph of ``python -m jobs`` (every module-level import, followed
through the kit's own modules) names none of them; and the verbs that need no model, run for real
in a child process, end with none of them in ``sys.modules`` (that catches a lazy import on their
path too).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.test_import_cycles import PACKAGES, REPO, module_name

MODEL_STACK = {"torch", "transformers", "sentence_transformers", "umap", "numba", "pynndescent", "sklearn"}


def eager_imports(path: Path) -> set[str]:
    """Every module ``path`` imports at module level (``if TYPE_CHECKING`` blocks left out)."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + node.orelse + node.finalbody)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def eager_closure(start: str) -> dict[str, str]:
    """Module -> the kit module that imports it first, over module-level imports from ``start``."""
    paths = {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    seen, todo = {start: ""}, [start]
    while todo:
        module = todo.pop()
        for name in eager_imports(paths[module]):
            parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)]
            for part in parents:
                if part not in seen:
                    seen[part] = module
                    if part in paths:
                        todo.append(part)
    return seen


def test_the_cli_imports_no_model_stack_at_module_level():
    closure = eager_closure("jobs.__main__")
    heavy = {m: by for m, by in closure.items() if m.split(".")[0] in MODEL_STACK}
    assert not heavy, f"imported at module level on the way to python -m jobs: {heavy}"
    assert "jobs.verbs" not in closure or "embedder.loader" not in closure


def test_the_graph_walk_finds_a_module_level_import(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n")
    assert "os" in eager_imports(source) and "torch" not in eager_imports(source)


PROBE = """
import runpy, sys, json
sys.argv = ["jobs", *json.loads(sys.argv[1])]
try:
    runpy.run_module("jobs", run_name="__main__")
except SystemExit:
    pass
print("MODULES=" + json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def loaded_after(*argv: str, env: dict | None = None) -> tuple[set[str], str]:
    """The top-level modules loaded once ``python -m jobs ARGV`` ran, and what it printed."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(argv))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES=")][-1]
    return set(json.loads(line[len("MODULES=") :])), proc.stdout + proc.stderr


def test_status_a_refused_plan_and_a_typo_load_no_model_stack(tmp_path, merged_run):
    import os

    cases = [
        ("status", "--run", str(merged_run)),
        (
            "plan",
            "--run",
            str(tmp_path / "new"),
            "--corpus",
            str(tmp_path / "missing.jsonl"),
            "--model",
            "demo",
        ),
        ("merge", "--run", str(tmp_path / "nowhere")),
        ("--help",),
    ]
    for argv in cases:
        loaded, out = loaded_after(*argv)
        assert not loaded & MODEL_STACK, (
            f"python -m jobs {' '.join(argv)} loaded {loaded & MODEL_STACK}:\n{out}"
        )
    # a local plan (DEVICE=auto) on a machine without a GPU driver: no torch to learn it computes on the CPU
    from jobs.demo import vital_articles
    from kit.gpudriver import no_cuda_driver
    from tests.conftest import write_jsonl

    corpus = write_jsonl(tmp_path / "vital.jsonl", vital_articles(12))
    local = ("plan", "--run", str(tmp_path / "local"), "--corpus", str(corpus), "--model", "demo")
    loaded, out = loaded_after(*local, "--profile", "local", "--shards", "1")
    assert "embed: 1 local worker(s) on the CPU" in out, out
    assert not loaded & (MODEL_STACK if no_cuda_driver() else MODEL_STACK - {"torch"}), out
    env = {**os.environ, "MAKEFLAGS": " -- SHRADS=16"}
    loaded, out = loaded_after("--make", "submit", env=env)
    assert "SHRADS=: the kit has no such variable; did you mean SHARDS=?" in out, out
    assert not loaded & MODEL_STACK
