"""The lab build's process handling (a real child process; no toolchain needed)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.lab import build
from harness.processes import pid_alive

CHATTY = "echo $$ > {pidfile}; sleep 300 & echo $! >> {pidfile}; while true; do echo built; sleep 0.1; done"


def test_an_interrupted_build_stops_its_whole_process_group_and_keeps_its_log(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "pids"

    def interrupt(message: str) -> None:
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        build._run_logged(
            ["sh", "-c", CHATTY.format(pidfile=pidfile)],
            dict(os.environ),
            tmp_path / "build.log",
            interrupt,
            started,
            what="go",
        )
    assert time.monotonic() - started < 10
    shell, sleeper = (int(x) for x in pidfile.read_text().split())
    deadline = time.monotonic() + 5
    while pid_alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(shell) and not pid_alive(sleeper)
    assert "built" in (tmp_path / "build.log").read_text()
