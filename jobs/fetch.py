"""make fetch: bring only the verified merged file of a run folder, over ssh + rsync, or from a
folder on this machine (a mounted cluster file system, or a run made here to try fetch on).

Every user value reaches ssh and rsync as its own argument (no local shell); remote commands
quote every path for the remote shell. ssh runs non-interactively with the user's own config,
keys, agent and ControlMaster; host keys are checked (new ones accepted, changed ones refused).
A local folder goes through the same rsync, checks and placement, without ssh.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath

from kit import atomic
from kit.commands import make_command
from kit.errors import FetchError
from kit.format import (
    FETCH_COPIES,
    INDEX_FILE,
    INDEX_RECORD_FILE,
    MANIFEST,
    OUTPUT_FILE,
    RunPaths,
    parse_sidecar,
    sidecar_path,
    sidecar_text,
)

STAGING_DIR = ".fetch"  # inside DEST: the rsync basis for re-fetches and resumes
PARTIAL_DIR = ".rsync-partial"
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "StrictHostKeyChecking=accept-new")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.@%\[\]+-]+$")
_PASSWORD_RE = re.compile(r"^[^@/:]+:[^@/]*@[^:/]+:")  # user:password@host:path
_PROGRESS_RE = re.compile(r"\d%\s")  # a --info=progress2 update ("1,234  5%  1.2MB/s  0:00:03")
_UNKNOWN_HOST = ("Could not resolve hostname", "Name or service not known", "nodename nor servname")


@dataclass(frozen=True)
class Remote:
    host: str | None  # ssh destination: host, user@host or an ssh config alias; None: a folder here
    run_dir: PurePosixPath  # the run folder: on the cluster, or (host None) an absolute path here

    def source(self, name: str) -> str:
        """rsync's source argument for ``name`` in the run folder."""
        return f"{self.host}:{self.run_dir / name}" if self.host else str(self.run_dir / name)

    def __str__(self) -> str:
        return f"{self.host}:{self.run_dir}" if self.host else str(self.run_dir)


@dataclass(frozen=True)
class FetchResult:
    path: Path
    sha256: str
    bytes_received: int  # bytes rsync moved (over the wire, or from the local folder)
    file_bytes: int
    index: str = ""  # what became of the run's search index: fetched, or why not ("": it has none)


_USAGE = (
    "Pass REMOTE=host:/path/to/run (an ssh host or alias from ~/.ssh/config) or the run folder's "
    "path on this machine (a mount): make fetch REMOTE=mycluster:/scratch/me/runs/wiki"
)


def parse_remote(remote: str) -> Remote:
    """``host:/path/to/run`` -> Remote over ssh; a path (no colon before its first slash, as
    rsync reads it: ``/mnt/cluster/runs/wiki``, ``runs/wiki``) -> a folder on this machine.

    Refuses option-like hosts and passwords in the address.
    """
    if _PASSWORD_RE.match(remote):
        raise FetchError(
            "REMOTE holds a password (user:password@host). The kit uses ssh keys, the ssh agent and "
            "your ~/.ssh/config only; there is no password option."
        )
    host, sep, path = remote.partition(":")
    if not remote.strip():
        raise FetchError(_USAGE)
    if not sep or "/" in host:
        return Remote(None, PurePosixPath(os.path.abspath(os.path.expanduser(remote))))
    if not host or not path:
        raise FetchError(f"REMOTE must name a host and a folder, got {remote!r}. {_USAGE}")
    if host.startswith("-") or not _HOST_RE.match(host):
        raise FetchError(
            f"Refusing ssh host {host!r}: it must not start with '-' or hold spaces or shell characters."
        )
    return Remote(host, PurePosixPath(path))


def ssh_base(ssh_config: Path | None) -> list[str]:
    """The ``ssh`` command line before the host: the kit's options, and ``-F ssh_config`` if given."""
    cmd = ["ssh", *SSH_OPTIONS]
    return cmd + (["-F", str(ssh_config)] if ssh_config else [])


def _explain_ssh_failure(host: str, stderr: str, ssh_config: Path | None) -> str:
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "Host key verification failed" in stderr:
        return (
            f"The host key of {host} does not match the one in known_hosts; refusing to connect. If the "
            f"cluster really changed its key, check it with your admins, then: ssh-keygen -R {host}"
        )
    if "Permission denied" in stderr:
        return (
            f"ssh to {host} was refused (BatchMode: no password prompts). Load your key (ssh-add), or open "
            f"a ControlMaster connection first (ssh -fN {host}) on 2FA clusters."
        )
    if any(sign in stderr for sign in _UNKNOWN_HOST):
        config = f"in {ssh_config}" if ssh_config else "in ~/.ssh/config (or pass SSH_CONFIG=file with it)"
        return (
            f"ssh does not know the host {host!r}: it is no Host alias {config} and no name this "
            f"machine resolves. Add 'Host {host}' with its HostName and User {config}, check it with: "
            f"ssh {host} true. A run folder mounted here is fetched by its path: make fetch REMOTE=/path/to/run"
        )
    return f"ssh to {host} failed: {stderr.strip()[-400:]}"


def remote_cat(remote: Remote, name: str, ssh_config: Path | None) -> str | None:
    """The text of ``<run>/<name>``, or None if it does not exist."""
    if remote.host is None:
        return _local_cat(Path(remote.run_dir / name))
    path = shlex.quote(str(remote.run_dir / name))
    command = f"if test -f {path}; then cat -- {path}; else echo __absent__; fi"
    proc = subprocess.run(
        [*ssh_base(ssh_config), "--", remote.host, command],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    if proc.returncode != 0:
        raise FetchError(_explain_ssh_failure(remote.host, proc.stderr, ssh_config))
    return None if proc.stdout.strip() == "__absent__" else proc.stdout


def _local_cat(path: Path) -> str | None:
    if not path.parent.is_dir():
        raise FetchError(
            f"REMOTE={shlex.quote(str(path.parent))} is no folder on this machine. A run on a cluster "
            "is REMOTE=host:/path/to/run, with an ssh host or alias from ~/.ssh/config."
        )
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise FetchError(f"Cannot read {path}: {err}; check the mount and its permissions (ls -l).") from err


def check_rsync() -> None:
    """GNU rsync >= 3.1 is needed (--partial-dir, --info=progress2); macOS's openrsync is not it."""
    if shutil.which("rsync") is None:
        raise FetchError(
            "rsync is not installed. Debian/Ubuntu: apt install rsync; macOS: brew install rsync."
        )
    version = subprocess.run(["rsync", "--version"], capture_output=True, text=True).stdout
    match = re.search(r"rsync\s+version\s+v?(\d+)\.(\d+)", version)
    if "openrsync" in version or not match or (int(match[1]), int(match[2])) < (3, 1):
        raise FetchError(
            "This rsync is not GNU rsync 3.1 or newer (macOS ships openrsync as /usr/bin/rsync). "
            "Install GNU rsync (brew install rsync) and put it first on PATH."
        )


def remote_state(remote: Remote, name: str, ssh_config: Path | None, missing: str) -> tuple[str, dict]:
    """(sha256 of ``name``, run.json) when the remote run has it, verified; FetchError otherwise
    (``missing`` when the run has no sidecar for ``name``)."""
    manifest = remote_cat(remote, MANIFEST, ssh_config)
    if manifest is None:
        raise FetchError(f"{remote} has no {MANIFEST}: it is not a run folder.")
    sidecar = remote_cat(remote, name + ".sha256", ssh_config)
    if sidecar is None:
        raise FetchError(missing)
    try:
        digest, listed = parse_sidecar(sidecar)
        if listed != name:
            raise ValueError(f"it names {listed!r}, not {name!r}")
        return digest, json.loads(manifest)
    except ValueError as err:
        raise FetchError(f"{remote}/{name}.sha256 is not a sha256sum line: {err}") from err


def rsync_command(remote: Remote, name: str, staging: Path, ssh_config: Path | None) -> list[str]:
    """rsync of one file into ``staging/``: resumable, times kept (an unchanged file is skipped)."""
    transport = ["-e", shlex.join(ssh_base(ssh_config))] if remote.host else []
    return [
        "rsync",
        "--secluded-args" if _rsync_has_secluded() else "--protect-args",
        "--times",
        f"--partial-dir={PARTIAL_DIR}",
        "--info=progress2",
        "--stats",
        "--no-compress",
        *transport,
        "--",
        remote.source(name),
        f"{staging}/",
    ]


def rsync_file(remote: Remote, name: str, staging: Path, ssh_config: Path | None) -> int:
    """rsync one file into ``staging`` (resumable); returns the bytes it moved (-1: not reported).

    rsync's progress line is shown on a terminal, rewritten in place and cleared at the end; its
    statistics are read for the byte count and never printed.
    """
    staging.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        rsync_command(remote, name, staging, ssh_config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stderr is not None  # both PIPE
    stats = _relay_progress(io.TextIOWrapper(proc.stdout, errors="replace", newline=""))
    stderr = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        why = _explain_ssh_failure(remote.host, stderr, ssh_config) if remote.host else stderr.strip()[-400:]
        raise FetchError(
            f"rsync of {name} stopped (exit {proc.returncode}); run make fetch again to resume. {why}"
        )
    side = "received" if remote.host else "sent"  # a local copy's statistics are the sender's
    match = re.search(rf"Total bytes {side}:\s+([\d,.]+)", stats)
    return int(match[1].replace(",", "").replace(".", "")) if match else -1


def _relay_progress(stdout: io.TextIOWrapper) -> str:
    """rsync's output less its progress updates, which go to a terminal over each other."""
    shown = sys.stderr.isatty()
    kept = []
    for line in stdout:  # newline="": a progress update ends in "\r", and is read as a line
        text = line.strip()
        if _PROGRESS_RE.search(text) and "Total" not in text:
            if shown:
                sys.stderr.write(f"\r\x1b[K  {text}")
                sys.stderr.flush()
        else:
            kept.append(line)
    if shown:
        sys.stderr.write("\r\x1b[K")  # the summary line the verb prints replaces it
    return "".join(kept)


def _rsync_has_secluded() -> bool:
    return "--secluded-args" in subprocess.run(["rsync", "--help"], capture_output=True, text=True).stdout


def place(staged: Path, final: Path, digest: str) -> None:
    """Hard-link the verified staged file under its final name atomically (copy across devices).

    Where ``final`` already is the staged file (a re-fetch rsync skipped), only the sidecar is
    written; a temporary name never outlives the call.
    """
    if not (final.exists() and os.path.samefile(staged, final)):
        with atomic.removed_on_error(atomic.tmp_path(final)) as tmp:
            tmp.unlink(missing_ok=True)
            try:
                os.link(staged, tmp)
            except OSError:
                shutil.copy2(staged, tmp)
            atomic.commit(tmp, final)
    atomic.write_text(sidecar_path(final), sidecar_text(digest, final))


def _check_dest(remote: Remote, dest: Path) -> None:
    if remote.host is None and Path(remote.run_dir).resolve() == dest.resolve():
        raise FetchError(
            f"REMOTE and DEST are the same folder ({dest}); fetch into another one: "
            f"{make_command('fetch', REMOTE=remote.run_dir, DEST=f'{dest.resolve()}-fetched')}"
        )


def fetch(
    remote_spec: str, dest: Path, ssh_config: Path | None = None, copy: str | None = None
) -> FetchResult:
    """Fetch ``embeddings.h5`` (or one of its smaller copies) of a finished run into ``dest``, verified.

    Args:
        remote_spec: ``host:/path/to/run`` (over ssh), or the run folder's path on this machine.
        dest: the local run folder it goes to. ssh_config: an ssh config file instead of ~/.ssh/config.
        copy: ``float16``, ``int8`` or ``binary``: fetch that copy (``make export-float16``,
            ``make export FORMAT=int8|binary`` on the cluster) instead of embeddings.h5.

    Raises:
        FetchError: the run is not finished, ssh/rsync failed, or the file does not match its SHA-256;
            the previous local file is kept in every case.
    """
    remote = parse_remote(remote_spec)
    _check_dest(remote, dest)
    check_rsync()
    name = FETCH_COPIES[copy] if copy else OUTPUT_FILE
    digest, manifest = remote_state(remote, name, ssh_config, _not_there(remote, name, copy))
    staging = dest / STAGING_DIR
    received = rsync_file(remote, name, staging, ssh_config)
    staged = staging / name
    actual = atomic.sha256_file(staged)
    if actual != digest:
        staged.unlink(missing_ok=True)  # never a basis for the next fetch
        raise FetchError(
            f"{name} from {remote} has SHA-256 {actual[:16]}..., but its sidecar says {digest[:16]}...; "
            f"kept the previous {dest / name}. If the run was merged again meanwhile, run make fetch again."
        )
    place(staged, dest / name, digest)
    atomic.write_text(RunPaths.of(dest).manifest, json.dumps(manifest, indent=2) + "\n")
    index = "" if copy else fetch_index(remote, dest, digest, ssh_config)
    return FetchResult(dest / name, digest, received, staged.stat().st_size, index)


def copy_command(copy: str, run_dir: PurePath) -> str:
    """The make command that writes ``copy`` (a FETCH_COPIES key) in the run at ``run_dir``."""
    if copy == "float16":
        return make_command("export-float16", RUN=run_dir)
    return make_command("export", RUN=run_dir, FORMAT=copy)


def _not_there(remote: Remote, name: str, copy: str | None) -> str:
    """What make fetch says when the remote run has no verified ``name``, with what to do."""
    if copy is not None:
        return (
            f"The run {remote} has no {name}: make it where the run is "
            f"({copy_command(copy, remote.run_dir)}), or fetch embeddings.h5 without COPY={copy}."
        )
    where = "On the cluster run" if remote.host else "See where it stands"
    return (
        f"The run {remote} has no verified {name} yet: it is still going or it failed. "
        f"{where}: {make_command('status', RUN=remote.run_dir)}"
    )


def fetch_index(remote: Remote, dest: Path, digest: str, ssh_config: Path | None) -> str:
    """The search index beside the remote embeddings.h5, when it was built from the file just fetched
    (checked as that file is); a line saying what was fetched, or why not ("" where there is none)."""
    record = remote_cat(remote, INDEX_RECORD_FILE, ssh_config)
    if record is None:
        return ""
    rebuild = make_command("index", RUN=dest)
    try:
        source = json.loads(record)["source"]["sha256"]
    except (ValueError, KeyError, TypeError):
        return f"Not fetched: {remote}/{INDEX_RECORD_FILE} is unreadable. Build an index here: {rebuild}"
    if source != digest:
        return f"Not fetched: the search index of {remote} was built from another embeddings.h5. Build one here: {rebuild}"
    try:
        missing = f"{remote} records an index but has no verified {INDEX_FILE}"
        index_digest, _ = remote_state(remote, INDEX_FILE, ssh_config, missing)
        staging = dest / STAGING_DIR
        rsync_file(remote, INDEX_FILE, staging, ssh_config)
    except FetchError as err:  # the merged file is in place: the index is a bonus, said in a line
        return f"Not fetched: the search index ({err}). Build one here: {rebuild}"
    if atomic.sha256_file(staging / INDEX_FILE) != index_digest:
        (staging / INDEX_FILE).unlink(missing_ok=True)
        return f"Not fetched: {INDEX_FILE} does not match its sidecar; run make fetch again, or build one here: {rebuild}"
    atomic.write_text(RunPaths.of(dest).index_record, record)
    place(staging / INDEX_FILE, RunPaths.of(dest).index, index_digest)
    return f"Fetched the search index {RunPaths.of(dest).index} (make search uses it)"
