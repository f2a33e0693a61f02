"""bench/gpu_check.py in its CPU mode: every check passes and the JSON record is written."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_cpu_quick_passes(tmp_path, model_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu_check.py"),
            "--device",
            "cpu",
            "--quick",
            "--model",
            str(model_path),
            "--out-dir",
            str(tmp_path),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert not [line for line in lines if line.startswith("FAIL")]
    record = json.loads(next(tmp_path.glob("gpu_check-cpu-*.json")).read_text())
    results = record["results"]
    assert {
        "environment",
        "parity",
        "injected_feeder_failure",
        "out_of_memory",
        "left_padded_decoder",
        "max_seq_length_limit",
        "throughput",
    } <= set(results)
    assert results["parity"]["float32"]["min_cosine"] >= 0.9999 > results["parity"]["float32"]["shuffled_max"]
    assert (
        results["injected_feeder_failure"]["positions"] >= 2 and results["out_of_memory"]["oom_splits"] >= 1
    )
    assert record["imported_forbidden"] == []  # runs where jobs/ and submitit are not installed
