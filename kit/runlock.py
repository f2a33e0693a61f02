"""One command per run folder at a time: an exclusive-create lock file that works on NFS, Lustre, GPFS.

``run.lock`` is created atomically and exclusively (a hard link of a fully written file: atomic on
the shared file systems clusters use, unlike ``flock`` on some NFS mounts) and holds who took it: host, pid, command, start time. A
second command reads it and refuses in one line without touching anything. A lock left by a
process that died on this host is stale and taken over; one from another host is named with the
command that removes it, since its pid cannot be checked from here. ``make status`` never locks.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Iterator

from kit.commands import shell_command
from kit.atomic import storage_cause
from kit.errors import KitError, RunBusyError
from kit.process import pid_alive
from kit.format import LOCK_FILE

BREAK_SUFFIX = ".break"  # held briefly while a stale lock is removed, so two removers cannot collide
BREAK_STALE_S = 60.0  # a .break file older than this was left by a killed remover


@dataclass(frozen=True)
class LockHolder:
    host: str
    pid: int
    command: str
    started_at: str  # ISO 8601, UTC

    def line(self) -> str:
        """The holder as a refusal names it: the command, its pid, host and start."""
        return f"{self.command!r} (pid {self.pid} on {self.host}, since {self.started_at})"


def lock_path(run_dir: Path) -> Path:
    """The run's lock file (run.lock)."""
    return Path(run_dir) / LOCK_FILE


def read_holder(path: Path) -> LockHolder | None:
    """Who holds the lock at ``path``; None if it is gone or not (yet) readable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(str(data["host"]), int(data["pid"]), str(data["command"]), str(data["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_stale(holder: LockHolder) -> bool:
    """Only a lock of this host can be proved stale: its process is gone."""
    return holder.host == socket.gethostname() and not pid_alive(holder.pid)


def _try_create(path: Path, holder: LockHolder) -> bool:
    """Write the holder to a file of our own, then hard-link it to ``path``: the link fails if the lock
    exists, and a lock that exists is always complete (the classic NFS-safe lock, cf. open(2) O_EXCL)."""
    own = path.with_name(f"{path.name}.{holder.host}.{holder.pid}")
    try:
        with open(own, "w", encoding="utf-8") as f:
            f.write(json.dumps(asdict(holder)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(own, path)
    except FileExistsError:
        return False
    except OSError as err:  # a full disk or a read-only folder: say so, do nothing else
        raise KitError(
            f"Cannot take the lock {path}: {storage_cause(err)}. Free space (or fix the folder's "
            "permissions) and run the same command again."
        ) from err
    finally:
        own.unlink(missing_ok=True)
    return True


def _remove_stale(path: Path, seen: LockHolder) -> None:
    """Remove ``path`` if it still holds ``seen`` (stale); one remover at a time through ``.break``."""
    breaker = path.with_name(path.name + BREAK_SUFFIX)
    with contextlib.suppress(FileNotFoundError):
        if time.time() - breaker.stat().st_mtime > BREAK_STALE_S:
            breaker.unlink()
    try:
        os.close(os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return  # another command is removing it; the caller tries again
    try:
        if read_holder(path) == seen:
            path.unlink(missing_ok=True)
    finally:
        breaker.unlink(missing_ok=True)


def refusal(run_dir: Path, holder: LockHolder | None) -> RunBusyError:
    """The one-line answer to a second command."""
    path = lock_path(run_dir)
    if holder is None:
        return RunBusyError(
            f"Run {run_dir} is locked by another command ({path} cannot be read). If no other "
            f"command runs on this run, remove the lock: {shell_command('rm', path)}"
        )
    if holder.host != socket.gethostname():
        return RunBusyError(
            f"Run {run_dir} is locked by {holder.line()}. If that command is no longer running "
            f"on {holder.host}, remove the lock: {shell_command('rm', path)}"
        )
    return RunBusyError(f"Run {run_dir} is busy: {holder.line()} holds {path}. Wait for it to finish.")


def acquire(run_dir: Path, command: str, attempts: int = 3) -> LockHolder:
    """Take the run's lock or raise RunBusyError naming its holder. Creates ``run_dir`` if needed."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(run_dir)
    me = LockHolder(
        socket.gethostname(), os.getpid(), command, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    for _ in range(attempts):
        if _try_create(path, me):
            return me
        holder = read_holder(path) or _read_again(path)
        if holder is not None and is_stale(holder):
            _remove_stale(path, holder)
        elif path.exists():
            raise refusal(run_dir, holder)
    raise refusal(run_dir, read_holder(path))


def _read_again(path: Path) -> LockHolder | None:
    """A lock just created may not be written yet: read it once more after a moment."""
    time.sleep(0.05)
    return read_holder(path)


def release(run_dir: Path, me: LockHolder) -> None:
    """Remove the lock if it is still ours (never another command's)."""
    path = lock_path(run_dir)
    if read_holder(path) == me:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def run_lock(run_dir: Path, command: str) -> Iterator[LockHolder]:
    """Hold the run's lock for the block: ``with run_lock(run_dir, "make submit"): ...``.

    A run folder the lock had to create and the command left empty (a refused first plan) is removed.
    """
    created = not Path(run_dir).exists()
    me = acquire(run_dir, command)
    try:
        yield me
    finally:
        release(run_dir, me)
        if created:
            with contextlib.suppress(OSError):  # not empty: the command made the run
                Path(run_dir).rmdir()
