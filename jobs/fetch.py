"""make fetch: bring only the verified merged file from a cluster run folder, over ssh + rsync.

Every user value reaches ssh and rsync as its own argument (no local shell); remote commands
quote every path for the remote shell. ssh runs non-interactively with the user's own config,
keys, agent and ControlMaster; host keys are checked (new ones accepted, changed ones refused).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kit import atomic
from kit.errors import FetchError
from kit.format import MANIFEST, OUTPUT_FILE, RunPaths, parse_sidecar, sidecar_path, sidecar_text

STAGING_DIR = ".fetch"  # inside DEST: the rsync basis for re-fetches and resumes
PARTIAL_DIR = ".rsync-partial"
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "StrictHostKeyChecking=accept-new")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.@%\[\]+-]+$")
_PASSWORD_RE = re.compile(r"^[^@/:]+:[^@/]*@[^:/]+:")  # user:password@host:path


@dataclass(frozen=True)
class Remote:
    host: str  # ssh destination: host, user@host or an ssh config alias
    run_dir: PurePosixPath  # the run folder on the cluster


@dataclass(frozen=True)
class FetchResult:
    path: Path
    sha256: str
    bytes_received: int  # bytes rsync moved over the wire
    file_bytes: int


def parse_remote(remote: str) -> Remote:
    """``host:/path/to/run`` -> Remote. Refuses option-like hosts and passwords in the address."""
    if _PASSWORD_RE.match(remote):
        raise FetchError(
            "REMOTE holds a password (user:password@host). The kit uses ssh keys, the ssh agent and "
            "your ~/.ssh/config only; there is no password option."
        )
    host, sep, path = remote.partition(":")
    if not sep or not host or not path:
        raise FetchError(f"REMOTE must look like host:/path/to/run (an ssh host or alias), got {remote!r}.")
    if host.startswith("-") or not _HOST_RE.match(host):
        raise FetchError(
            f"Refusing ssh host {host!r}: it must not start with '-' or hold spaces or shell characters."
        )
    return Remote(host, PurePosixPath(path))


def ssh_base(ssh_config: Path | None) -> list[str]:
    """The ``ssh`` command line before the host: the kit's options, and ``-F ssh_config`` if given."""
    cmd = ["ssh", *SSH_OPTIONS]
    return cmd + (["-F", str(ssh_config)] if ssh_config else [])


def _explain_ssh_failure(host: str, stderr: str) -> str:
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
    return f"ssh to {host} failed: {stderr.strip()[-400:]}"


def remote_cat(remote: Remote, name: str, ssh_config: Path | None) -> str | None:
    """The text of ``<run>/<name>`` on the remote, or None if it does not exist."""
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
        raise FetchError(_explain_ssh_failure(remote.host, proc.stderr))
    return None if proc.stdout.strip() == "__absent__" else proc.stdout


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


def remote_state(remote: Remote, name: str, ssh_config: Path | None) -> tuple[str, dict]:
    """(sha256 of the merged file, run.json) when the remote run is complete; FetchError otherwise."""
    manifest = remote_cat(remote, MANIFEST, ssh_config)
    if manifest is None:
        raise FetchError(f"{remote.host}:{remote.run_dir} has no {MANIFEST}: it is not a run folder.")
    sidecar = remote_cat(remote, name + ".sha256", ssh_config)
    if sidecar is None:
        raise FetchError(
            f"The run {remote.host}:{remote.run_dir} has no verified {name} yet: it is still going or "
            f"it failed. On the cluster run: make status RUN={shlex.quote(str(remote.run_dir))}"
        )
    try:
        digest, listed = parse_sidecar(sidecar)
        if listed != name:
            raise ValueError(f"it names {listed!r}, not {name!r}")
        return digest, json.loads(manifest)
    except ValueError as err:
        raise FetchError(
            f"{remote.host}:{remote.run_dir}/{name}.sha256 is not a sha256sum line: {err}"
        ) from err


def rsync_file(remote: Remote, name: str, staging: Path, ssh_config: Path | None) -> int:
    """rsync one file into ``staging`` (resumable); returns the bytes received."""
    staging.mkdir(parents=True, exist_ok=True)
    cmd = [
        "rsync",
        "--secluded-args" if _rsync_has_secluded() else "--protect-args",
        "--times",
        f"--partial-dir={PARTIAL_DIR}",
        "--info=progress2",
        "--stats",
        "--no-compress",
        "-e",
        shlex.join(ssh_base(ssh_config)),
        "--",
        f"{remote.host}:{remote.run_dir / name}",
        f"{staging}/",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None  # both PIPE
    out_lines = []
    for line in proc.stdout:  # progress2 lines go to the user's terminal as they come
        out_lines.append(line)
        sys.stderr.write(line)
    stderr = proc.stderr.read()
    if proc.wait() != 0:
        raise FetchError(
            f"rsync of {name} stopped (exit {proc.returncode}); run make fetch again to resume. "
            + _explain_ssh_failure(remote.host, stderr)
        )
    match = re.search(r"Total bytes received:\s+([\d,.]+)", "".join(out_lines))
    return int(match[1].replace(",", "").replace(".", "")) if match else -1


def _rsync_has_secluded() -> bool:
    return "--secluded-args" in subprocess.run(["rsync", "--help"], capture_output=True, text=True).stdout


def place(staged: Path, final: Path, digest: str) -> None:
    """Hard-link the verified staged file under its final name atomically (copy across devices)."""
    tmp = atomic.tmp_path(final)
    tmp.unlink(missing_ok=True)
    try:
        os.link(staged, tmp)
    except OSError:
        shutil.copy2(staged, tmp)
    atomic.commit(tmp, final)
    atomic.write_text(sidecar_path(final), sidecar_text(digest, final))


def fetch(remote_spec: str, dest: Path, ssh_config: Path | None = None, float16: bool = False) -> FetchResult:
    """Fetch ``embeddings.h5`` (or its float16 copy) of a finished remote run into ``dest``, verified.

    Raises:
        FetchError: the run is not finished, ssh/rsync failed, or the file does not match its SHA-256;
            the previous local file is kept in every case.
    """
    remote = parse_remote(remote_spec)
    check_rsync()
    name = OUTPUT_FILE.replace(".h5", ".float16.h5") if float16 else OUTPUT_FILE
    digest, manifest = remote_state(remote, name, ssh_config)
    staging = dest / STAGING_DIR
    received = rsync_file(remote, name, staging, ssh_config)
    staged = staging / name
    actual = atomic.sha256_file(staged)
    if actual != digest:
        staged.unlink(missing_ok=True)  # never a basis for the next fetch
        raise FetchError(
            f"{name} from {remote.host}:{remote.run_dir} has SHA-256 {actual[:16]}..., but its sidecar "
            f"says {digest[:16]}...; kept the previous {dest / name}. If the run was merged again "
            "meanwhile, run make fetch again."
        )
    place(staged, dest / name, digest)
    atomic.write_text(RunPaths.of(dest).manifest, json.dumps(manifest, indent=2) + "\n")
    return FetchResult(dest / name, digest, received, staged.stat().st_size)
