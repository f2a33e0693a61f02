"""Bytes on the wire for make fetch: first fetch, unchanged re-fetch, re-fetch after a re-merge.

    python bench/fetch_bytes.py [--rows 50000] [--dim 768]

Runs a throwaway sshd on 127.0.0.1 (tests/services/sshd.py) serving a synthetic merged run,
and reports rsync's "Total bytes received" against the file size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import h5py  # noqa: E402

from tests.fixtures.synthetic import synthetic_run  # noqa: E402
from jobs.fetch import fetch  # noqa: E402
from jobs.merging import merge_run_folder  # noqa: E402
from tests.fixtures.sshd import Sshd  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = root / "remote run"
        synthetic_run(run, args.rows, 8, args.dim, fast=True)
        merge_run_folder(run)
        sshd = Sshd(root / "sshd").start()
        try:
            config, remote, dest = sshd.client_config(), f"testcluster:{run}", root / "laptop"
            first = fetch(remote, dest, config)
            again = fetch(remote, dest, config)
            with h5py.File(run / "shards" / "shard-00003.h5", "a") as h5:  # one shard recomputed
                h5["embeddings"][:] = h5["embeddings"][:] * 0.5
            merge_run_folder(run)
            changed = fetch(remote, dest, config)
        finally:
            sshd.stop()
    size = first.file_bytes
    print(f"embeddings.h5: {args.rows:,} x {args.dim} float32, {size:,} bytes")
    for label, r in (
        ("first fetch", first),
        ("re-fetch, unchanged", again),
        ("re-fetch, 1 of 8 shards changed", changed),
    ):
        print(
            f"  {label:32s} {r.bytes_received:>13,} bytes received ({r.bytes_received / size:7.2%} of the file)"
        )


if __name__ == "__main__":
    main()
