"""The search package: every public function documented, and opening a folder for search loads no model
stack nor faiss (the model comes with the first question, faiss with an index; the verbs start at once)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests import test_docstrings
from tests.helpers import REPO


MODEL_STACK = {"torch", "transformers", "sentence_transformers", "umap", "numba", "sklearn", "faiss"}


def test_public_functions_of_search_have_docstrings(monkeypatch):
    monkeypatch.setattr(test_docstrings, "PACKAGES", ("search",))
    missing = test_docstrings.undocumented()
    assert not missing, "public functions without a docstring:\n" + "\n".join(missing)


def test_opening_a_folder_for_search_imports_no_model_stack():
    stack = sorted(MODEL_STACK)
    code = (
        "import json, sys\n"
        "import search.session, search.index, search.compact, search.exact, merge.exporter\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {stack!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
