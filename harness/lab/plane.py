"""Starting and stopping the lab's processes: in order, and undone in reverse on failure.

As envtest's ``plane.go``: components start one after another, each healthy before the next;
their PIDs go to ``state.json`` at once, so that ``down`` (from any process) stops them in
reverse order, SIGTERM then SIGKILL, pods of a dead agent included.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from harness.lab.components import Component
from harness.lab.paths import LabPaths
from harness.processes import ManagedProcess, pid_alive, stop_pid_group

Progress = Callable[[str], None]


def read_state(paths: LabPaths) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(paths.state.read_text())
        return state
    except (OSError, ValueError):
        return {}


def write_state(paths: LabPaths, state: dict[str, Any]) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    tmp = paths.state.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(paths.state)


def start(
    components: list[Component], paths: LabPaths, state: dict[str, Any], progress: Progress
) -> dict[str, float]:
    """Start each component and wait for its health; seconds each took.

    Raises :class:`~harness.processes.StartError` (the caller stops what started).
    """
    timings: dict[str, float] = {}
    for component in components:
        t0 = time.monotonic()
        process = ManagedProcess(
            name=component.name,
            argv=component.argv,
            log_path=paths.logs / f"{component.name}.log",
            healthy=component.healthy,
            start_timeout_s=component.start_timeout_s,
            stop_timeout_s=component.stop_timeout_s,
            cwd=paths.root,
        )
        process.start()
        assert process.pid is not None
        state["components"].append(
            {"name": component.name, "pid": process.pid, "stop_timeout_s": component.stop_timeout_s}
        )
        write_state(paths, state)
        timings[component.name] = round(time.monotonic() - t0, 2)
        progress(f"{component.name} healthy in {timings[component.name]:.1f}s (pid {process.pid})")
    return timings


def pod_pids(paths: LabPaths) -> list[int]:
    pids = []
    for pid_file in paths.root.glob("nodes/*/pods/*/*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(pid_file.read_text()))
    return pids


def stop(paths: LabPaths, progress: Progress) -> list[int]:
    """Stop every component in reverse order, then leftover pods; the PIDs that were stopped."""
    state = read_state(paths)
    components = state.get("components", [])
    stopped: list[int] = []
    # a frozen node (lab node stop) must be thawed to hear SIGTERM
    for pid in [int(c["pid"]) for c in components] + pod_pids(paths):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGCONT)
    for component in reversed(components):
        pid = int(component["pid"])
        if pid_alive(pid):
            stop_pid_group(pid, grace_s=float(component.get("stop_timeout_s", 10)))
            stopped.append(pid)
            progress(f"stopped {component['name']} (pid {pid})")
    for pid in pod_pids(paths):  # pods of an agent that died without cleaning up
        if pid_alive(pid):
            stop_pid_group(pid, grace_s=3)
            stopped.append(pid)
            progress(f"stopped leftover pod process {pid}")
    for pid_file in paths.root.glob("nodes/*/pods/*/*.pid"):
        pid_file.unlink()
    if state:
        state["components"] = []
        state["stopped_at"] = time.time()
        write_state(paths, state)
    return stopped


def frozen(pid: int) -> bool:
    """Whether ``pid`` is stopped (SIGSTOP: a frozen lab node)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(") ", 1)[1][:1] == "T"
    except (OSError, IndexError):
        return False
