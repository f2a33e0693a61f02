"""A run folder copied elsewhere still merges, maps and exports there (issue 30, item 1).

``cp -r`` (here ``shutil.copytree`` with ``shutil.copy``) gives every file a new modification
time. The kit took its own converted parquet for an edited source because of it, then opened
``corpus.h5`` a second time with other HDF5 locking flags while a reader held it: make merge, map
and export failed with "file locking flag values don't match". A partial copy (the index without
its parquet) got a traceback. The shared finished run of the real model, copied, serves the module.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import MERGED_ROWS, copy_run
from tests.helpers import REPO, jobs_cli, wait_for

ROWS = MERGED_ROWS


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, merged_run) -> Path:
    """The shared merged run (prepared from JSONL, so it has its own parquet), in a folder of its own."""
    return copy_run(merged_run, tmp_path_factory.mktemp("copied") / "runs" / "original")


def copied(run: Path, name: str, **ignore: str) -> Path:
    """``cp -r run <name>`` beside it: every file gets a new mtime (``ignore``: glob patterns left out)."""
    target = run.parent / name
    shutil.copytree(run, target, copy_function=shutil.copy, ignore=shutil.ignore_patterns(*ignore.values()))
    return target


def vectors(run: Path) -> tuple[np.ndarray, list[str], list[str]]:
    with h5py.File(run / "embeddings.h5", "r") as h5:
        return h5["embeddings"][:], h5["ids"].asstr()[:].tolist(), h5["titles"].asstr()[:].tolist()


def no_job_running(run: Path) -> bool:
    return not re.search(r"\b(RUNNING|PENDING)\b", jobs_cli("status", "--run", str(run)).stdout)


def test_a_copied_run_folder_merges_maps_and_exports_there(finished_run):
    copy = copied(finished_run, "copied run é")
    assert "corpus-rows-" in " ".join(p.name for p in copy.iterdir())  # the run's own parquet went along
    merged = jobs_cli("merge", "--run", str(copy))
    assert f"Merged {ROWS} rows x 384 into {copy / 'embeddings.h5'}" in merged.stdout, merged.stderr
    emb, ids, titles = vectors(copy)
    emb0, ids0, titles0 = vectors(finished_run)
    np.testing.assert_array_equal(emb, emb0)
    assert ids == ids0 and titles == titles0 and all(titles)
    mapped = jobs_cli("map", "--run", str(copy))
    assert f"Map of {copy}" in mapped.stdout and (copy / "map.h5").is_file()
    assert "Region names from titles only" not in mapped.stderr  # the texts were read from the copy
    exported = jobs_cli("export", "--run", str(copy))
    assert f"Exported {ROWS} rows x 384" in exported.stdout and (copy / "embeddings.parquet").is_file()


def test_a_partial_copy_is_refused_in_one_line_and_the_printed_command_repairs_it(finished_run):
    copy = copied(finished_run, "partial", parquet="corpus-rows-*.parquet")
    refused = jobs_cli("merge", "--run", str(copy), check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    [line] = [ln for ln in refused.stderr.splitlines() if ln.startswith("error:")]
    assert f"Run folder {copy} is incomplete: corpus-rows-" in line and ".parquet" in line
    command = line.split("(no shard is recomputed while the corpus's rows are the same): ", 1)[1]
    assert command.startswith(f"make submit RUN={copy} CORPUS="), command
    repaired = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert repaired.returncode == 0, repaired.stderr
    assert (
        "Submitted 0 shard(s) (1 already complete)" in repaired.stdout or "Nothing to do" in repaired.stdout
    )
    wait_for(lambda: no_job_running(copy), 120, "the repaired run's jobs to end")
    jobs_cli("merge", "--run", str(copy))
    emb, ids, titles = vectors(copy)
    np.testing.assert_array_equal(emb, vectors(finished_run)[0])
    assert titles == vectors(finished_run)[2]
