"""Scratch labs for tests and benchmarks (as envtest's ``Environment``): fail fast, clean up.

A scratch lab runs in a directory of its own on a free lab slot (ports, pod and Service
addresses), never the default lab's, so it coexists with a running ``just demo`` lab. It
never builds anything: the binaries it needs are looked up first and their absence is one
line naming ``flywheel-chaos lab build`` (an hour-long RustFS build inside a benchmark is
not what anyone asked for).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from harness.errors import ConfigError
from harness.lab.build import missing_binaries, rustfs_built
from harness.lab.cluster import Lab
from harness.lab.paths import RUSTFS_VERSION, LabPaths, bin_dir, free_ports, release_slot
from harness.lab.topology import canonical, needs_rustfs


class LabBinariesMissing(ConfigError):
    """The scratch lab's binaries are not built (run ``flywheel-chaos lab build``)."""


def require_binaries(topology: str = "interim", directory: Path | None = None) -> Path:
    """The bin directory a ``topology`` lab runs from; refuses, naming the build, if incomplete."""
    where = directory or bin_dir()
    missing = missing_binaries(where)
    if missing:
        raise LabBinariesMissing(
            f"lab binaries missing from {where}: {', '.join(missing)}",
            "run 'flywheel-chaos lab build' first (a few minutes, once)",
        )
    if needs_rustfs(topology) and not rustfs_built(where):
        raise LabBinariesMissing(
            f"topology {canonical(topology)} runs RustFS {RUSTFS_VERSION}, which is not built in {where}",
            "run 'flywheel-chaos lab build --rustfs' first (about an hour on 2 cores, once)",
        )
    return where


@contextlib.contextmanager
def scratch_lab(root: Path, topology: str = "interim") -> Iterator[Lab]:
    """A fresh lab in ``root``, stopped and removed after; whatever ``root`` held is removed."""
    require_binaries(topology)
    shutil.rmtree(root, ignore_errors=True)
    ports = free_ports()
    lab = Lab(LabPaths(root), topology=topology, ports=ports)
    try:
        lab.up(lambda message: None)
        try:
            yield lab
        finally:
            lab.down(lambda message: None)
            shutil.rmtree(root, ignore_errors=True)
    finally:
        release_slot(ports)
