"""What every component's builder gets (:class:`Site`) and gives (:class:`Component`)."""

from __future__ import annotations

import contextlib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.lab.paths import LabPaths, Ports


@dataclass(frozen=True)
class Site:
    """Where a lab runs: its directory, its ports, its binaries and its topology."""

    paths: LabPaths
    ports: Ports
    bin: Path
    topology_dir: Path


@dataclass(frozen=True)
class Component:
    """One lab process: how to start it and how to know it is healthy."""

    name: str
    argv: list[str]
    healthy: Callable[[], bool]
    start_timeout_s: float = 60.0
    stop_timeout_s: float = 10.0


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """Whether ``url`` answers 200 within ``timeout_s``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def https_ok(url: str, paths: LabPaths, timeout_s: float = 1.0) -> bool:
    """Whether a control-plane endpoint answers 200 (the lab's admin client certificate)."""
    context = ssl.create_default_context(cafile=None)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with contextlib.suppress(Exception):
        context.load_cert_chain(paths.pki / "admin.crt", paths.pki / "admin.key")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False
