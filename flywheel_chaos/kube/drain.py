"""A drain as ``kubectl drain`` does it: plan, cordon, evict through the Eviction API, wait.

The activity (:func:`actions.nodes.drain_node`) checks the allowlists, ``min_ready_nodes``
and the lease and writes the rollback intent; this module plans and carries it out.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypedDict

from chaoslib.exceptions import ActivityFailed
from kubernetes import client
from kubernetes.client.rest import ApiException

from flywheel_chaos.kube.client import API_TIMEOUT
from flywheel_chaos.kube.pods import (
    Owners,
    controller_kind,
    ident,
    not_displaced_because,
    pods_on_node,
    wait_pods_gone,
)
from flywheel_chaos.kube.safety import SafetyRefusal, check_namespace_allowed

__all__ = ["Eviction", "Skipped", "evict_all", "plan_drain", "wait_evicted_gone"]

logger = logging.getLogger("flywheel_chaos.kube")

POLICIES = ("refuse", "evict")


class Skipped(TypedDict):
    pod: str
    reason: str


class Eviction(TypedDict):
    pod: str
    uid: str
    owner_uids: list[str]
    evicted_at: str
    attempts: int
    gone_at: str | None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def check_policies(**policies: str) -> None:
    for policy, value in policies.items():
        if value not in POLICIES:
            raise SafetyRefusal(f"refused: {policy} must be 'refuse' or 'evict', not {value!r}")


def plan_drain(
    core: client.CoreV1Api,
    node: str,
    empty_dir: str,
    unmanaged: str,
    configuration: Mapping[str, Any] | None,
) -> tuple[list[Any], list[Skipped]]:
    """The pods a drain of ``node`` evicts, and those it skips (with why); refuses first."""
    to_evict, skipped = [], []
    for pod in pods_on_node(core, node):
        reason = not_displaced_because(pod)
        if reason:
            skipped.append(Skipped(pod=ident(pod), reason=reason))
            continue
        if controller_kind(pod) is None and unmanaged != "evict":
            raise SafetyRefusal(
                f"refused: pod {ident(pod)} on {node} has no controller and would not come back "
                "(hint: pass unmanaged='evict' to evict it anyway)"
            )
        if any(v.empty_dir is not None for v in (pod.spec.volumes or [])) and empty_dir != "evict":
            raise SafetyRefusal(
                f"refused: pod {ident(pod)} on {node} uses emptyDir data that eviction deletes "
                "(hint: pass empty_dir='evict' to accept losing it)"
            )
        check_namespace_allowed(pod.metadata.namespace, configuration)
        to_evict.append(pod)
    return to_evict, skipped


def budget_message(exc: ApiException) -> str:
    """What a refused eviction's body says (the PodDisruptionBudget's message)."""
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return str(exc.reason)
    causes = (body.get("details") or {}).get("causes") or []
    messages = [c.get("message", "") for c in causes if c.get("message")]
    return "; ".join(messages) or str(body.get("message", exc.reason))


def _evict_one(
    core: client.CoreV1Api,
    pod: Any,
    deadline: float,
    first_delay: float,
    max_delay: float,
    between: Callable[[], None],
) -> int:
    """Evict ``pod``, retrying 429 (a budget) with backoff until ``deadline``; the attempts."""
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod.metadata.name, "namespace": pod.metadata.namespace},
    }
    attempt, delay = 0, first_delay
    while True:
        attempt += 1
        between()
        try:
            core.create_namespaced_pod_eviction(
                pod.metadata.name, pod.metadata.namespace, body, _request_timeout=API_TIMEOUT
            )
            return attempt
        except ApiException as exc:
            if exc.status == 404:
                return attempt  # already gone
            message = budget_message(exc)
            if exc.status != 429:
                raise ActivityFailed(
                    f"eviction of {ident(pod)} failed: {exc.status} {exc.reason}: {message}"
                ) from exc
            logger.info(
                "eviction of %s: attempt %d refused (429): %s", ident(pod), attempt, message
            )
            if time.monotonic() + delay > deadline:
                raise ActivityFailed(
                    f"drain did not finish: eviction of {ident(pod)} was refused {attempt} time(s) "
                    f"until the deadline: {message} (hint: the PodDisruptionBudget blocks it; "
                    "scale up or relax the budget)"
                ) from exc
            time.sleep(delay)
            delay = min(max_delay, delay * 2)


def _nothing() -> None:
    return None


def evict_all(
    core: client.CoreV1Api,
    pods: list[Any],
    deadline: float,
    first_delay: float,
    max_delay: float,
    between: Callable[[], None] = _nothing,
) -> list[Eviction]:
    """Evict every pod at once, as ``kubectl drain`` does (``between`` runs before every
    attempt: the lease check); each pod keeps its own 429 backoff until ``deadline``. When
    one eviction fails, the others still finish (an eviction cannot be taken back), then the
    first failure is raised."""
    owners = Owners(core.api_client)

    def evict(pod: Any) -> Eviction:
        attempts = _evict_one(core, pod, deadline, first_delay, max_delay, between)
        return Eviction(
            pod=ident(pod),
            uid=pod.metadata.uid,
            owner_uids=owners.uids(pod),
            evicted_at=_now(),
            attempts=attempts,
            gone_at=None,
        )

    if not pods:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(pods)), thread_name_prefix="evict") as pool:
        futures = [pool.submit(evict, pod) for pod in pods]
        wait(futures)
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
    return [future.result() for future in futures]


def wait_evicted_gone(
    core: client.CoreV1Api,
    node: str,
    results: list[Eviction],
    deadline: float,
    between: Callable[[], None] | None = None,
) -> None:
    """Wait (watching) until every evicted pod is gone; names those still there at ``deadline``."""
    gone = wait_pods_gone(
        core,
        [r["uid"] for r in results],
        deadline,
        field_selector=f"spec.nodeName={node}",
        between=between,
    )
    for result in results:
        if result["uid"] in gone:
            result["gone_at"] = dt.datetime.fromtimestamp(gone[result["uid"]], dt.UTC).isoformat()
    left = [r["pod"] for r in results if r["uid"] not in gone]
    if left:
        raise ActivityFailed(
            f"drain did not finish: still waiting for {', '.join(left)} to go away"
        )
