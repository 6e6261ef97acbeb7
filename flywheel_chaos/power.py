"""The lab's power contract: how a node fault asks the lab's hypervisor to hang or kill a node.

The only way production code reaches a lab. A node fault with a lab method writes
``<lab>/nodes/<node>/power.request`` (:class:`PowerRequest`); the lab node's power
supervisor (``harness.lab.power``) enacts it and answers in ``power.state``
(:class:`PowerState`), naming the request it handled. The lab is the directory
``FLYWHEEL_LAB_DIR`` (or the experiment's ``flywheel_lab_dir``) names; without one there is
no lab, and a lab method is refused.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, TypedDict, cast

from chaoslib.exceptions import ActivityFailed

from flywheel_chaos import settings
from flywheel_chaos.kube.safety import SafetyRefusal

__all__ = [
    "POWER_REQUEST",
    "POWER_STATE",
    "PowerRequest",
    "PowerState",
    "PowerWant",
    "lab_dir",
    "node_dir",
    "read_state",
    "request",
]

POWER_REQUEST: Final = "power.request"
POWER_STATE: Final = "power.state"
PowerWant = Literal["freeze", "thaw", "off", "on"]
POWER_WANTS: Final[tuple[PowerWant, ...]] = ("freeze", "thaw", "off", "on")


class PowerRequest(TypedDict):
    id: str
    want: PowerWant
    at: float
    """Epoch seconds when it was asked."""


class PowerState(TypedDict, total=False):
    id: str
    """The request this state answers."""
    state: Literal["running", "frozen", "off"]
    agent_pid: int | None
    pods: list[int]
    killed: list[int]
    """Process groups an ``off`` killed."""
    changed_at: float


def lab_dir(configuration: Mapping[str, Any] | None = None) -> str:
    """The lab this process may reach (empty: none)."""
    return settings.from_config(configuration, "flywheel_lab_dir", settings.FLYWHEEL_LAB_DIR)


def node_dir(lab: str | Path, node: str) -> Path:
    return Path(lab) / "nodes" / node


def read_state(lab: str | Path, node: str) -> PowerState:
    """What the node's supervisor last said (empty when it never answered)."""
    try:
        return cast(PowerState, json.loads((node_dir(lab, node) / POWER_STATE).read_text()))
    except (OSError, ValueError):
        return {}


def request(lab: str | Path, node: str, want: PowerWant, within_s: float = 20.0) -> PowerState:
    """Ask the lab node's power supervisor for ``want`` and wait until it says it is done."""
    if want not in POWER_WANTS:
        raise ValueError(want)
    directory = node_dir(lab, node)
    if not directory.is_dir():
        raise SafetyRefusal(
            f"refused: {directory} does not exist: is {lab} a running lab with node {node}?"
        )
    asked: PowerRequest = {"id": uuid.uuid4().hex, "want": want, "at": time.time()}
    tmp = directory / f".{POWER_REQUEST}.tmp"
    tmp.write_text(json.dumps(asked))
    os.replace(tmp, directory / POWER_REQUEST)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        state = read_state(lab, node)
        if state.get("id") == asked["id"]:
            return state
        time.sleep(0.1)
    raise ActivityFailed(
        f"the lab's power supervisor of {node} did not answer '{want}' within {within_s:g}s "
        f"(hint: is the lab up? flywheel-chaos lab status)"
    )
