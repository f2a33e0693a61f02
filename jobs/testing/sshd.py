"""A throwaway sshd on 127.0.0.1 for the fetch tests and benchmark (real OpenSSH, real keys)."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


class Sshd:
    """``sshd -D -e -f CONFIG`` in the background (the daemonising form drops connections here)."""

    def __init__(self, root: Path, alias: str = "testcluster"):
        if not Path(SSHD).exists() or shutil.which("rsync") is None:
            raise RuntimeError("openssh-server and rsync are required: run make test-services "
                               "(bash tests/services/install.sh)")
        self.root, self.alias, self.port = root, alias, _free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.host_key, self.user_key = root / "host_ed25519", root / "user_ed25519"
        _keygen(self.host_key)
        _keygen(self.user_key)
        (root / "authorized_keys").write_text(Path(f"{self.user_key}.pub").read_text())
        self.known_hosts = root / "known_hosts"
        self.config = root / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {root / 'authorized_keys'}", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "StrictModes no",
            "UsePAM no", f"PidFile {root / 'sshd.pid'}", "LogLevel ERROR", "Subsystem sftp internal-sftp", ""]))
        self.proc: subprocess.Popen | None = None

    def client_config(self, name: str = "ssh_config", proxy_rate_bps: int | None = None) -> Path:
        """An ssh config with the alias; ``proxy_rate_bps`` routes it through a bandwidth-limited relay."""
        lines = [f"Host {self.alias}", "  HostName 127.0.0.1", f"  Port {self.port}", f"  User {getpass.getuser()}",
                 f"  IdentityFile {self.user_key}", "  IdentitiesOnly yes", f"  UserKnownHostsFile {self.known_hosts}",
                 "  LogLevel ERROR"]
        if proxy_rate_bps:
            lines.append(f"  ProxyCommand {sys.executable} {HERE / 'slow_proxy.py'} %h %p {proxy_rate_bps}")
        path = self.root / name
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> "Sshd":
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.root / "sshd.log", "wb"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError("sshd did not listen within 20 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
