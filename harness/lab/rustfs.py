"""RustFS (built by ``lab build --rustfs`` from crates.io) as a local S3 server.

Safe defaults for this project: it binds one loopback address only, never
checks for updates (RustFS 1.0.1 calls version.rustfs.com at start-up unless
``RUSTFS_CHECK_UPDATE=false``), runs no console, and enforces credentials.
:data:`SAFE_ENV` is what every RustFS the lab starts gets, pods included.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from harness.lab.paths import RUSTFS_VERSION, bin_dir, cache_root
from harness.processes import ManagedProcess, free_port

SAFE_ENV = {
    "RUSTFS_CHECK_UPDATE": "false",
    "RUSTFS_CONSOLE_ENABLE": "false",
    "RUSTFS_OBS_LOGGER_LEVEL": "warn",
    "RUSTFS_OBS_ENDPOINT": "",
    "RUSTFS_ENABLE_PROFILING": "false",
}
"""No update check, no console, no telemetry export, no profiler: nothing leaves loopback."""


class RustFSNotFound(RuntimeError):
    """The ``rustfs`` binary is not built."""


def rustfs_binary() -> str:
    """Path of the built ``rustfs``: the lab's binary cache, then cargo's install root, then PATH."""
    for candidate in (
        bin_dir() / "rustfs",
        cache_root() / "cargo" / f"rustfs-{RUSTFS_VERSION}" / "bin" / "rustfs",
    ):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("rustfs")
    if found:
        return found
    raise RustFSNotFound(
        f"RustFS {RUSTFS_VERSION} is not built (run 'flywheel-chaos lab build --rustfs')"
    )


def ready(ip: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when RustFS's own readiness endpoint says ready (``/health/ready`` 200)."""
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/health/ready", timeout=timeout_s) as r:
            return bool(r.status == 200)
    except (OSError, ValueError, urllib.error.HTTPError):
        return False


@dataclass
class RustFSServer:
    """One single-drive ``rustfs server`` on a loopback address, with its own data directory."""

    data_dir: Path
    access_key: str
    secret_key: str = field(repr=False)
    ip: str = "127.0.0.1"
    port: int = 0
    start_timeout_s: float = 60.0
    stop_timeout_s: float = 10.0
    process: ManagedProcess | None = field(default=None, init=False)

    @property
    def endpoint(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def start(self) -> RustFSServer:
        (self.data_dir / "drive").mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.ip)
        env = {
            **os.environ,
            **SAFE_ENV,
            "RUSTFS_ADDRESS": f"{self.ip}:{self.port}",
            "RUSTFS_ACCESS_KEY": self.access_key,
            "RUSTFS_SECRET_KEY": self.secret_key,
        }
        self.process = ManagedProcess(
            name="rustfs",
            argv=[rustfs_binary(), "server", str(self.data_dir / "drive")],
            log_path=self.data_dir / "rustfs.log",
            healthy=lambda: ready(self.ip, self.port),
            start_timeout_s=self.start_timeout_s,
            stop_timeout_s=self.stop_timeout_s,
            env=env,
        )
        self.process.start()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> RustFSServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
