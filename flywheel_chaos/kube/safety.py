"""The safety rules every mutating action obeys, before it changes anything.

Refuse unless this run holds the live cluster lease (read from the API, not assumed:
:func:`require_lease`); refuse nodes and namespaces outside the allowlists (unset means
refuse); refuse when fewer than ``min_ready_nodes`` other nodes would stay Ready and
schedulable. A refusal is a :class:`SafetyRefusal`: the run stops with nothing changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from chaoslib.exceptions import ActivityFailed
from kubernetes import client
from kubernetes.client.rest import ApiException

from flywheel_chaos import settings
from flywheel_chaos.errors import EXIT_FAILED
from flywheel_chaos.kube.client import API_TIMEOUT, api_client
from flywheel_chaos.kube.nodes import is_ready

__all__ = [
    "LEASE_NAME",
    "SafetyRefusal",
    "check_min_ready",
    "check_namespace_allowed",
    "check_node_allowed",
    "lease_expired",
    "lease_namespace",
    "namespace_allowlist",
    "node_allowlist",
    "read_node",
    "refused_run",
    "require_lease",
    "run_id",
]

LEASE_NAME: Final = "flywheel-chaos-experiment"
"""The one-experiment-at-a-time ``coordination.k8s.io`` Lease."""


class SafetyRefusal(ActivityFailed):  # type: ignore[misc]
    """A mutating action refused before it changed anything (exit 1: the run proves nothing)."""

    exit_code = EXIT_FAILED


def node_allowlist(configuration: Mapping[str, Any] | None) -> list[str]:
    return settings.list_from_config(
        configuration, "flywheel_node_allowlist", settings.FLYWHEEL_NODE_ALLOWLIST
    )


def namespace_allowlist(configuration: Mapping[str, Any] | None) -> list[str]:
    return settings.list_from_config(
        configuration, "flywheel_namespace_allowlist", settings.FLYWHEEL_NAMESPACE_ALLOWLIST
    )


def refused_run() -> str | None:
    """Why this run may not mutate (set by the safety control: lease held elsewhere, or lost)."""
    return settings.FLYWHEEL_RUN_REFUSED.get() or None


def run_id() -> str | None:
    """The id of the run this process belongs to (set by the safety control)."""
    return settings.FLYWHEEL_RUN_ID.get() or None


def lease_namespace() -> str:
    return settings.FLYWHEEL_LEASE_NAMESPACE.get()


def lease_expired(spec: Any, now: dt.datetime) -> bool:
    """Whether a Lease spec has no holder or was not renewed within its duration."""
    if not spec or not spec.holder_identity:
        return True
    renewed = spec.renew_time or spec.acquire_time
    if renewed is None:
        return True
    return bool((now - renewed).total_seconds() > (spec.lease_duration_seconds or 0))


def require_lease(configuration: Mapping[str, Any] | None) -> str:
    """Refuse unless this run holds the live cluster lease; returns the run id.

    Checked against the API every time, not assumed: the lease must exist,
    name this run's holder identity and be unexpired. Any failure to read it
    (a 403, an unreachable API) refuses too: fail closed.
    """
    reason = refused_run()
    if reason:
        raise SafetyRefusal(f"refused: {reason}")
    run, holder = run_id(), settings.FLYWHEEL_LEASE_HOLDER.get()
    if not run or not holder:
        raise SafetyRefusal(
            "refused: this run holds no cluster lease (hint: run the experiment with chaos run "
            "and its harness.controls.safety control, which takes the lease first)"
        )
    namespace = lease_namespace()
    where = f"{namespace}/{LEASE_NAME}"
    try:
        lease = client.CoordinationV1Api(api_client(configuration)).read_namespaced_lease(
            LEASE_NAME, namespace, _request_timeout=API_TIMEOUT
        )
    except ApiException as exc:
        raise SafetyRefusal(
            f"refused: cannot read the cluster lease {where}: {exc.status} "
            f"{exc.reason} (hint: the identity needs get on that Lease; see deploy/rbac.yaml)"
        ) from exc
    except Exception as exc:  # unreachable API, TLS, timeouts: fail closed
        raise SafetyRefusal(f"refused: cannot read the cluster lease {where}: {exc}") from exc
    current = lease.spec.holder_identity if lease.spec else None
    if current != holder:
        raise SafetyRefusal(
            f"refused: the cluster lease {where} is held by {current or 'nobody'}, "
            f"not by this run ({holder})"
        )
    if lease_expired(lease.spec, dt.datetime.now(dt.UTC)):
        raise SafetyRefusal(
            f"refused: this run's cluster lease {where} has expired (not renewed in time)"
        )
    return run


def _check_allowed(kind: str, value: str, allowed: list[str], key: str, variable: str) -> None:
    if value not in allowed:
        raise SafetyRefusal(
            f"refused: {kind} {value!r} is not in the {kind} allowlist {allowed or '(empty)'} "
            f"(hint: set {key} in the experiment's configuration or {variable})"
        )


def check_node_allowed(node: str, configuration: Mapping[str, Any] | None) -> None:
    variable = settings.FLYWHEEL_NODE_ALLOWLIST.name
    _check_allowed("node", node, node_allowlist(configuration), "flywheel_node_allowlist", variable)


def check_namespace_allowed(namespace: str, configuration: Mapping[str, Any] | None) -> None:
    allowed = namespace_allowlist(configuration)
    variable = settings.FLYWHEEL_NAMESPACE_ALLOWLIST.name
    _check_allowed("namespace", namespace, allowed, "flywheel_namespace_allowlist", variable)


def read_node(core: client.CoreV1Api, name: str) -> Any:
    """Node ``name``; refuses when it does not exist."""
    try:
        return core.read_node(name, _request_timeout=API_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            raise SafetyRefusal(
                f"refused: node {name!r} does not exist (hint: kubectl get nodes)"
            ) from exc
        raise ActivityFailed(f"reading node {name!r} failed: {exc.status} {exc.reason}") from exc


def check_min_ready(core: client.CoreV1Api, node: str, min_ready_nodes: int) -> list[str]:
    """Names of the other Ready schedulable nodes; refuse when fewer than ``min_ready_nodes``."""
    nodes = core.list_node(_request_timeout=API_TIMEOUT).items
    others = [
        n.metadata.name
        for n in nodes
        if n.metadata.name != node and is_ready(n) and not (n.spec and n.spec.unschedulable)
    ]
    if len(others) < min_ready_nodes:
        raise SafetyRefusal(
            f"refused: only {len(others)} other node(s) are Ready and schedulable ({', '.join(others) or 'none'}); "
            f"min_ready_nodes is {min_ready_nodes} (hint: bring nodes back before injecting this fault)"
        )
    return others
