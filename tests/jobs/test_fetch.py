"""make fetch against a real sshd on 127.0.0.1 with a throwaway key, and real rsync."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from jobs.fetch import check_rsync, fetch, parse_remote
from jobs.merging import merge_run_folder
from tests.fixtures.sshd import Sshd
from tests.fixtures.synthetic import synthetic_run
from kit.errors import FetchError
from kit.shardfile import digest
from merge.float16 import write_float16_copy
from tests.conftest import cosine_rows
from tests.helpers import make_cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


def make_remote_run(root: Path, rows: int = 2000, dim: int = 64) -> Path:
    run = root / "cluster runs" / "it's a run"  # spaces and a quote on purpose
    synthetic_run(run, rows, 4, dim, fast=True)
    merge_run_folder(run)
    return run


def remerge(run: Path, shard: int = 1) -> None:
    """Change the remote data (as a re-run would) and merge again."""
    with h5py.File(run / "shards" / f"shard-0000{shard}.h5", "a") as h5:
        h5["embeddings"][0] = h5["embeddings"][0] * 2
        if "checksums" in h5:  # a re-run writes its digests with its rows
            rows = int(h5.attrs["checksum_rows"])
            h5["checksums"][0] = digest(h5["embeddings"][:rows])
    merge_run_folder(run)


@pytest.fixture
def remote_run(tmp_path):
    return make_remote_run(tmp_path / "remote")


def sha(path: Path) -> str:
    return subprocess.run(["sha256sum", str(path)], capture_output=True, text=True).stdout.split()[0]


def test_fetch_then_refetch_moves_almost_nothing(sshd, remote_run, tmp_path):
    config = sshd.client_config()
    dest = tmp_path / "laptop dir"
    first = fetch(f"testcluster:{remote_run}", dest, config)
    assert first.path == dest / "embeddings.h5" and sha(first.path) == sha(remote_run / "embeddings.h5")
    assert first.bytes_received >= first.file_bytes * 0.9
    assert (dest / "embeddings.h5.sha256").read_text() == (remote_run / "embeddings.h5.sha256").read_text()
    assert (dest / "run.json").exists() and not list(dest.glob("*.tmp"))
    again = fetch(f"testcluster:{remote_run}", dest, config)
    assert 0 < again.bytes_received < first.file_bytes / 50  # parsed from rsync (an unparsed count is -1)
    assert not list(dest.rglob("*.tmp"))


def test_changed_remote_file_is_refetched_cleanly(sshd, remote_run, tmp_path):
    config = sshd.client_config()
    dest = tmp_path / "dest"
    fetch(f"testcluster:{remote_run}", dest, config)
    remerge(remote_run)
    result = fetch(f"testcluster:{remote_run}", dest, config)
    assert sha(dest / "embeddings.h5") == sha(remote_run / "embeddings.h5") == result.sha256


def test_corrupt_sidecar_or_file_is_refused_and_previous_file_kept(sshd, remote_run, tmp_path):
    config = sshd.client_config()
    dest = tmp_path / "dest"
    fetch(f"testcluster:{remote_run}", dest, config)
    good = sha(dest / "embeddings.h5")
    remerge(remote_run)
    sidecar = remote_run / "embeddings.h5.sha256"
    sidecar.write_text("0" * 64 + "  embeddings.h5\n")
    with pytest.raises(FetchError, match="kept the previous"):
        fetch(f"testcluster:{remote_run}", dest, config)
    assert sha(dest / "embeddings.h5") == good
    sidecar.write_text("not a sidecar\n")
    with pytest.raises(FetchError, match="is not a sha256sum line"):
        fetch(f"testcluster:{remote_run}", dest, config)
    assert sha(dest / "embeddings.h5") == good


def test_remote_run_not_finished_fetches_nothing(sshd, tmp_path):
    run = tmp_path / "remote" / "running"
    synthetic_run(run, 100, 2, 8)
    (run / "shards" / "shard-00001.h5").unlink()
    dest = tmp_path / "dest"
    with pytest.raises(
        FetchError, match=r"has no verified embeddings.h5 yet: it is still going or it failed.*make status"
    ):
        fetch(f"testcluster:{run}", dest, sshd.client_config())
    assert not dest.exists()
    with pytest.raises(FetchError, match="not a run folder"):
        fetch(f"testcluster:{tmp_path / 'nothing here'}", dest, sshd.client_config())


def test_changed_host_key_is_refused(sshd, remote_run, tmp_path):
    config = sshd.client_config("ssh_config_other_key")
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key = Path(f"{other}.pub").read_text().split()[:2]
    saved = sshd.known_hosts.read_text() if sshd.known_hosts.exists() else ""
    try:
        sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(key)}\n")
        with pytest.raises(FetchError, match="does not match the one in known_hosts.*ssh-keygen -R"):
            fetch(f"testcluster:{remote_run}", tmp_path / "dest", config)
        assert not (tmp_path / "dest").exists()
    finally:
        sshd.known_hosts.write_text(saved)


def test_interrupted_transfer_resumes_to_a_verified_file(sshd, tmp_path):
    run = make_remote_run(tmp_path / "remote", rows=40_000, dim=128)  # ~20 MiB
    size = (run / "embeddings.h5").stat().st_size
    config = sshd.client_config("ssh_config_slow", proxy_rate_bps=4 << 20)
    dest = tmp_path / "dest"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobs",
            "fetch",
            "--remote",
            f"testcluster:{run}",
            "--dest",
            str(dest),
            "--ssh-config",
            str(config),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    staging = dest / ".fetch"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until rsync has written a quarter of the file
        temp = [p for p in staging.glob(".embeddings.h5.*")] if staging.exists() else []
        if temp and temp[0].stat().st_size > size // 4:
            break
        time.sleep(0.05)
    rsync = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    for pid in rsync:
        os.kill(pid, signal.SIGTERM)  # what a dropped connection or Ctrl-C does
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "run make fetch again to resume" in err
    assert not (dest / "embeddings.h5").exists()
    partial = staging / ".rsync-partial" / "embeddings.h5"
    assert partial.exists() and 0 < partial.stat().st_size < size
    resumed = fetch(f"testcluster:{run}", dest, sshd.client_config())
    assert sha(dest / "embeddings.h5") == sha(run / "embeddings.h5")
    assert 0 < resumed.bytes_received < size - partial_size_floor(size)


def test_fetch_without_dest_goes_to_runs_and_the_remote_run_name(sshd, remote_run, tmp_path):
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs",
            "fetch",
            "--remote",
            f"testcluster:{remote_run}",
            "--dest",
            "",
            "--ssh-config",
            str(sshd.client_config()),
        ],
        cwd=laptop,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    fetched = laptop / "runs" / remote_run.name / "embeddings.h5"
    assert (
        sha(fetched) == sha(remote_run / "embeddings.h5") and not (laptop / "runs" / "embeddings.h5").exists()
    )


def partial_size_floor(size: int) -> int:
    return size // 8  # the resume must not have re-sent what the first attempt kept


@pytest.mark.parametrize(
    "remote",
    [
        "-oProxyCommand=touch {marker}:/x",
        "testcluster:/x; touch {marker}",
        "testcluster:/x$(touch {marker})",
        "testcluster:/x`touch {marker}`",
        "testcluster:/x' ; touch {marker}; echo '",
        "testcluster:/x\ntouch {marker}",
    ],
)
def test_injection_through_remote_executes_nothing(sshd, tmp_path, remote):
    marker = tmp_path / "PWNED"
    with pytest.raises(FetchError):
        fetch(remote.format(marker=marker), tmp_path / "dest", sshd.client_config())
    assert not marker.exists()


def test_injection_through_make_variables_executes_nothing(sshd, remote_run, tmp_path):
    marker = tmp_path / "PWNED"
    dest = tmp_path / f"d; touch {marker}; '$(touch {marker})'"
    env = {
        **os.environ,
        "REMOTE": f"testcluster:{remote_run}",
        "DEST": str(dest),
        "SSH_CONFIG": str(sshd.client_config()),
        "FLOAT16": "",
    }
    proc = subprocess.run(
        ["make", "-s", "fetch"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert (dest / "embeddings.h5").exists() and not marker.exists()
    proc = subprocess.run(
        ["make", "-s", "fetch", f"REMOTE=testcluster:/x;touch {marker}", f"DEST={tmp_path}/d2"],
        cwd=REPO,
        env={**os.environ, "SSH_CONFIG": str(sshd.client_config())},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and not marker.exists()


def test_password_in_remote_is_refused():
    with pytest.raises(FetchError, match="no password option"):
        parse_remote("alice:secret@cluster:/runs/x")


def test_openrsync_is_detected(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "rsync"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\necho 'openrsync: protocol version 29'\necho 'rsync version 2.6.9 compatible'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    with pytest.raises(FetchError, match="brew install rsync"):
        check_rsync()


def test_float16_copy_halves_the_bytes_and_keeps_cosine(sshd, tmp_path):
    remote_run = make_remote_run(tmp_path / "remote", rows=2000, dim=384)
    write_float16_copy(remote_run)
    result = fetch(f"testcluster:{remote_run}", tmp_path / "dest", sshd.client_config(), copy="float16")
    assert result.path.name == "embeddings.float16.h5"
    with h5py.File(result.path) as half, h5py.File(remote_run / "embeddings.h5") as full:
        assert half["embeddings"].dtype == np.float16
        assert cosine_rows(half["embeddings"][:].astype(np.float32), full["embeddings"][:]).min() >= 0.99999
        assert half["ids"].asstr()[:].tolist() == full["ids"].asstr()[:].tolist()
    full_size = (remote_run / "embeddings.h5").stat().st_size
    assert result.file_bytes < 0.6 * full_size


def assert_one_summary_line(proc: subprocess.CompletedProcess) -> None:
    """make fetch prints one line, and none of rsync's statistics or progress updates."""
    assert proc.stdout.count("\n") == 1 and proc.stdout.startswith("Fetched "), proc.stdout
    for stat in ("Number of files", "Total bytes", "sent ", "speedup", "xfr#", "to-chk"):
        assert stat not in proc.stdout + proc.stderr, (stat, proc.stdout, proc.stderr)


def moved_bytes(proc: subprocess.CompletedProcess) -> int:
    """The bytes rsync moved, from make fetch's summary line ("(N bytes, M received)")."""
    match = re.search(r"bytes, ([\d,]+) received", proc.stdout)
    assert match, proc.stdout
    return int(match[1].replace(",", ""))


def test_refetch_over_ssh_leaves_no_tmp_and_prints_one_line(sshd, remote_run, tmp_path):
    dest = tmp_path / "laptop"
    for _ in range(2):  # the second fetch finds the file unchanged
        proc = make_cli(
            "fetch", REMOTE=f"testcluster:{remote_run}", DEST=dest, SSH_CONFIG=sshd.client_config()
        )
        assert_one_summary_line(proc)
        assert not list(dest.rglob("*.tmp")), list(dest.rglob("*.tmp"))
    assert sha(dest / "embeddings.h5") == sha(remote_run / "embeddings.h5")


def test_a_folder_on_this_machine_is_fetched_with_the_same_checks(tmp_path):
    run = make_remote_run(tmp_path / "mounted cluster")
    dest = tmp_path / "laptop"
    first = make_cli("fetch", REMOTE=run, DEST=dest)
    assert_one_summary_line(first)
    size = (run / "embeddings.h5").stat().st_size
    assert moved_bytes(first) >= size
    assert sha(dest / "embeddings.h5") == sha(run / "embeddings.h5")
    assert (dest / "embeddings.h5.sha256").read_text() == (run / "embeddings.h5.sha256").read_text()
    assert (dest / "run.json").exists()
    good = sha(dest / "embeddings.h5")
    again = make_cli("fetch", REMOTE=run, DEST=dest)
    assert_one_summary_line(again)
    assert 0 < moved_bytes(again) < size / 50  # unchanged: rsync skips it
    assert not list(dest.rglob("*.tmp"))
    remerge(run)
    (run / "embeddings.h5.sha256").write_text("0" * 64 + "  embeddings.h5\n")
    refused = make_cli("fetch", REMOTE=run, DEST=dest, check=False)
    assert refused.returncode != 0 and "kept the previous" in refused.stderr, refused.stderr
    assert sha(dest / "embeddings.h5") == good and not list(dest.rglob("*.tmp"))
    (run / "embeddings.h5.sha256").unlink()  # as while the run is merging again
    going = make_cli("fetch", REMOTE=run, DEST=dest, check=False)
    assert "has no verified embeddings.h5 yet" in going.stderr and "make status RUN=" in going.stderr
    assert sha(dest / "embeddings.h5") == good and not list(dest.rglob("*.tmp"))


def test_a_local_remote_that_is_no_run_folder_or_dest_itself_is_refused(tmp_path):
    run = make_remote_run(tmp_path / "runs", rows=200, dim=8)
    same = make_cli("fetch", REMOTE=run, DEST=run, check=False)
    assert same.returncode != 0 and "REMOTE and DEST are the same folder" in same.stderr
    assert "make fetch REMOTE=" in same.stderr and "Traceback" not in same.stderr
    missing = make_cli("fetch", REMOTE=tmp_path / "no such run", DEST=tmp_path / "d", check=False)
    assert missing.returncode != 0 and "is no folder on this machine" in missing.stderr
    assert "host:/path/to/run" in missing.stderr and not (tmp_path / "d").exists()


def test_an_unknown_host_gets_a_hint_of_ssh_config():
    proc = make_cli("fetch", REMOTE="nosuchhost.invalid:/runs/wiki", DEST="/nonexistent/dest", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "ssh does not know the host 'nosuchhost.invalid'" in proc.stderr, proc.stderr
    assert "~/.ssh/config" in proc.stderr and "SSH_CONFIG=" in proc.stderr


@pytest.mark.parametrize(
    ("remote", "host", "path"),
    [
        ("mycluster:/scratch/runs/wiki", "mycluster", "/scratch/runs/wiki"),
        ("me@login.hpc.example.org:runs/wiki", "me@login.hpc.example.org", "runs/wiki"),
        ("/mnt/cluster/runs/wiki", None, "/mnt/cluster/runs/wiki"),
        ("/mnt/a:b/wiki", None, "/mnt/a:b/wiki"),  # a colon after a slash is part of a path (rsync's rule)
    ],
)
def test_remote_is_a_host_and_folder_or_a_path_here(remote, host, path):
    parsed = parse_remote(remote)
    assert (parsed.host, str(parsed.run_dir)) == (host, path)


def test_a_relative_remote_is_a_folder_here():
    parsed = parse_remote("runs/wiki")
    assert parsed.host is None and Path(parsed.run_dir) == Path.cwd() / "runs" / "wiki"
