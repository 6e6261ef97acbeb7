"""``lab node stop|crash|start``: a lab node's power, through the same contract the faults use."""

from __future__ import annotations

from typing import Any

from flywheel_chaos import power
from harness.errors import ConfigError, HarnessError
from harness.lab.paths import NODES, LabPaths


def request(paths: LabPaths, node: str, want: power.PowerWant, up: bool) -> power.PowerState:
    if node not in NODES:
        raise ConfigError(f"no lab node named {node!r}", f"lab nodes are: {', '.join(NODES)}")
    if not up:
        raise ConfigError("the lab is not running", "run 'flywheel-chaos lab up' first")
    try:
        return power.request(paths.root, node, want)
    except Exception as exc:  # ActivityFailed from the shared contract
        raise HarnessError(
            f"lab node {node} did not {want}: {exc}", "see flywheel-chaos lab status"
        ) from exc


def pids(state: power.PowerState) -> list[int]:
    """The agent's and its pods' PIDs a power state names."""
    found: list[Any] = [state.get("agent_pid"), *state.get("pods", [])]
    return [int(p) for p in found if p]
