"""One HDF5 locking policy, in one place (kit/h5files.py): no flock, the same flags on every open.

HDF5 refuses a second open of a file with other locking flags than an open the process already
holds ("file locking flag values don't match"): that broke make merge/map/export on a copied run
folder (issue 30). Every open of the kit's files goes through ``kit.h5files.open_h5``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import h5py
import numpy as np

from kit.corpusfile import CorpusReader, corpus_info, corpus_problem
from kit.h5files import LOCKING, open_h5
from tests.test_import_cycles import REPO

PACKAGES = ("jobs", "kit", "embedder", "merge", "knowledgemap", "search", "slurm")
POLICY = REPO / "kit" / "h5files.py"


def h5py_file_calls(path: Path) -> list[int]:
    """Lines of ``path`` that call ``h5py.File(...)`` (annotations such as ``h5: h5py.File`` are not calls)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "File"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "h5py"
    ]


def test_every_open_of_the_kits_hdf5_files_goes_through_the_one_policy():
    calls = {
        f"{path.relative_to(REPO)}:{line}"
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
        if path != POLICY
        for line in h5py_file_calls(path)
    }
    assert not calls, f"open these with kit.h5files.open_h5 (one locking policy): {sorted(calls)}"
    assert LOCKING is False  # never flock: it fails or does nothing on many NFS, Lustre and GPFS mounts


def test_a_file_held_open_by_a_reader_can_be_opened_again_in_the_same_process(tmp_path):
    path = tmp_path / "f.h5"
    with open_h5(path, "w") as h5:
        h5.create_dataset("x", data=np.arange(3))
    with open_h5(path) as first, open_h5(path) as second:
        assert first["x"][:].tolist() == second["x"][:].tolist() == [0, 1, 2]


def test_a_corpus_index_is_checked_while_a_reader_holds_it(tmp_path):
    """What failed on a copied run: a task's reader holds corpus.h5 while another check opens it."""
    from embedder.config import CorpusOptions
    from embedder.corpus import prepare

    index = tmp_path / "run" / "corpus.h5"
    prepare([{"id": str(i), "text": f"row {i}"} for i in range(4)], index, CorpusOptions(), "records")
    with CorpusReader(index) as reader:
        assert reader.read(0, 2)["texts"] == ["row 0", "row 1"]
        assert corpus_problem(index) is None and corpus_info(index).rows == 4
        with h5py.File(index, "r", locking=False) as again:  # a user's script with the documented flags
            assert again.attrs["rows"] == 4
