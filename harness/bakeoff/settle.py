"""A lab (or cluster) a run may start from: every node Ready and schedulable, every pod of
the state namespace Running and Ready, and the experiments' own steady state holding."""

from __future__ import annotations

import time
from typing import Final

from kubernetes import client

from flywheel_chaos.kube.client import API_TIMEOUT
from flywheel_chaos.kube.nodes import is_ready
from flywheel_chaos.s3.authority import StateAuthority
from flywheel_chaos.s3.checks import check_canary_round_trip, check_lock_exclusive, check_state_key
from flywheel_chaos.s3.errors import StateAuthorityError

__all__ = ["SETTLE_S", "settle", "unsettled"]

SETTLE_S: Final = 180.0


def unsettled(core: client.CoreV1Api, namespace: str, authority: StateAuthority) -> list[str]:
    """What keeps the lab from the steady state a run must start from ([] when none)."""
    left = []
    for node in core.list_node(_request_timeout=API_TIMEOUT).items:
        ready = is_ready(node)
        if not ready or node.spec.unschedulable:
            left.append(f"node {node.metadata.name} {'cordoned' if ready else 'not Ready'}")
    for pod in core.list_namespaced_pod(namespace, _request_timeout=API_TIMEOUT).items:
        if (
            pod.metadata.deletion_timestamp is not None
            or pod.status.phase != "Running"
            or not is_ready(pod)
        ):
            left.append(
                f"pod {pod.metadata.name} {pod.status.phase}{'' if is_ready(pod) else ', not Ready'}"
            )
    if left:
        return left
    for check in (check_state_key, check_canary_round_trip, check_lock_exclusive):
        try:
            check(authority)
        except StateAuthorityError as exc:
            return [f"{check.__name__}: {exc}"[:300]]
    return []


def settle(
    core: client.CoreV1Api, namespace: str, authority: StateAuthority, within_s: float = SETTLE_S
) -> tuple[float, list[str]]:
    """Wait (every 1 s, at most ``within_s``) until settled: (seconds, what is still left)."""
    started = time.monotonic()
    left = unsettled(core, namespace, authority)
    while left and time.monotonic() - started < within_s:
        time.sleep(1.0)
        try:
            left = unsettled(core, namespace, authority)
        except Exception as exc:  # an API that does not answer yet: not settled
            left = [f"the API: {exc}"]
    return round(time.monotonic() - started, 1), left
