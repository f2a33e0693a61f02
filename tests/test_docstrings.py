"""Public functions and methods of the packages carry a docstring (issue 16).

Left out: names starting with ``_`` (dunders included), properties, and methods that implement a
protocol method of ``slurm/backend.py`` (``Watcher``, ``Backend``) or of the ``embedder.readers``
``Reader`` protocol under the same name: the protocol's docstring speaks for them.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("jobs", "kit", "embedder", "merge", "knowledgemap", "slurm")
PROTOCOL_METHODS = {"batches", "snapshot", "cancel", "in_this_terminal", "submit", "check", "version"}
PROPERTY_DECORATORS = {"property", "cached_property", "setter", "getter", "deleter"}


def _decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set()
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call):
            decorator = decorator.func
        if isinstance(decorator, ast.Name):
            names.add(decorator.id)
        elif isinstance(decorator, ast.Attribute):
            names.add(decorator.attr)
    return names


def _methods(cls: ast.ClassDef):
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node
        elif isinstance(node, ast.ClassDef):
            yield from _methods(node)


def undocumented(root: Path = ROOT) -> list[str]:
    """``file:line:name`` of each public function or method in the packages without a docstring."""
    missing = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            found = []
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found.append((node, node.name))
                elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    for method in _methods(node):
                        if method.name in PROTOCOL_METHODS or _decorator_names(method) & PROPERTY_DECORATORS:
                            continue
                        found.append((method, f"{node.name}.{method.name}"))
            for node, name in found:
                if node.name.startswith("_") or ast.get_docstring(node):
                    continue
                missing.append(f"{path.relative_to(root)}:{node.lineno}:{name}")
    return missing


def test_public_functions_have_docstrings():
    missing = undocumented()
    assert not missing, "public functions without a docstring:\n" + "\n".join(missing)
