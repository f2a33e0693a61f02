"""Time and peak memory of the map stage (make map's build_map) at 250,000 and 1,000,000 rows.

    python bench/map_scale.py --rows 250000 [--dim 768] [--keep DIR]

Data: a merged run (embeddings.h5 only) of unit vectors around 60 cluster centres in a
40-dimensional subspace plus noise (bench/map_synthetic.py), titles naming each row's cluster.
The whole stage runs as make map runs it (PCA 32 + parallel UMAP, quality sample, regions and
names, map.html, map.png, map.svg, map.h5, reducer), without questions. Peak memory is the
process's maximum resident set (getrusage), so it includes building the synthetic data.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.map_synthetic import merged_run  # noqa: E402
from knowledgemap.params import MapParams  # noqa: E402
from knowledgemap.run import PAGE_FILE, build_map  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument(
        "--keep", type=Path, help="write the run folder here and keep it (default: a temporary one)"
    )
    args = parser.parse_args()
    run = args.keep or Path(tempfile.mkdtemp(prefix="map-scale-"))
    t0 = time.perf_counter()
    merged_run(run, args.rows, args.dim)
    made_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    quality = build_map(run, MapParams())
    stage_s = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        json.dumps(
            {
                "rows": args.rows,
                "dim": args.dim,
                "synthetic_data_s": round(made_s, 1),
                "map_stage_s": round(stage_s, 1),
                "umap_and_quality_s": round(quality["fit_seconds"], 1),
                "peak_rss_gb": round(peak_gb, 2),
                "trustworthiness": round(quality["trustworthiness"], 4),
                "page_mb": round((run / PAGE_FILE).stat().st_size / 1e6, 1),
                "run": str(run),
            }
        )
    )


if __name__ == "__main__":
    main()
