"""Nodes: the one reader of the Ready condition, waits on it, and cordoning."""

from __future__ import annotations

import logging
import time
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from flywheel_chaos.kube.client import API_TIMEOUT

__all__ = [
    "is_ready",
    "ready_condition",
    "ready_status",
    "set_unschedulable",
    "wait_ready",
]

logger = logging.getLogger("flywheel_chaos.kube")


def ready_condition(obj: Any) -> str:
    """The Ready condition of a node (or pod) object: ``True``, ``False`` or ``Unknown``.

    The one reader of it in the house: accepts the client's objects and plain dicts (JSON).
    """
    if isinstance(obj, dict):
        conditions = (obj.get("status") or {}).get("conditions") or []
        found = [c.get("status") for c in conditions if c.get("type") == "Ready"]
    else:
        status = getattr(obj, "status", None)
        conditions = (getattr(status, "conditions", None) or []) if status else []
        found = [c.status for c in conditions if c.type == "Ready"]
    return str(found[0]) if found and found[0] else "Unknown"


def is_ready(obj: Any) -> bool:
    return ready_condition(obj) == "True"


def ready_status(core: client.CoreV1Api, node: str) -> str:
    """The node's Ready condition, read from the API."""
    return ready_condition(core.read_node(node, _request_timeout=API_TIMEOUT))


def wait_ready(
    core: client.CoreV1Api, node: str, want_ready: bool, within_s: float, what: str
) -> tuple[bool, float, str]:
    """Poll (every 0.5 s, each read bounded) until Ready is/leaves ``True``; (reached, seconds, last)."""
    started = time.monotonic()
    last = "?"
    attempt = 0
    while True:
        attempt += 1
        try:
            last = ready_status(core, node)
        except ApiException as exc:  # a read that failed: say so, keep waiting
            last = f"unreadable ({exc.status})"
            logger.info("%s: attempt %d: reading node %s failed: %s", what, attempt, node, exc)
        reached = (last == "True") == want_ready and not last.startswith("unreadable")
        elapsed = time.monotonic() - started
        if reached or elapsed >= within_s:
            return reached, round(elapsed, 2), last
        time.sleep(0.5)


def set_unschedulable(core: client.CoreV1Api, node: str, value: bool) -> None:
    core.patch_node(node, {"spec": {"unschedulable": value or None}}, _request_timeout=API_TIMEOUT)
