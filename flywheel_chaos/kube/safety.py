"""The safety rules every mutating action obeys, before it changes anything.

Refuse unless this run holds the live cluster lease (read from the API, not assumed:
:func:`require_lease`); refuse nodes and namespaces outside the allowlists (unset means
refuse); refuse when fewer than ``min_ready_nodes`` other nodes would stay Ready and
schedulable. A refusal is a :class:`SafetyRefusal`: the run stops with nothing changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
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
    "LeaseGuard",
    "LeaseObservations",
    "SafetyRefusal",
    "check_min_ready",
    "check_namespace_allowed",
    "check_node_allowed",
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


class LeaseObservations:
    """When this host last saw the lease change: how its expiry is judged (as client-go's
    leader election does), never by comparing the holder's ``renewTime`` with this host's
    clock (a host 31 s ahead would take a live lease).

    A lease is expired when its ``resourceVersion`` has not changed for its duration *as
    this host saw it*. Observations persist in ``FLYWHEEL_STATE_DIR/lease-observed.json``
    (this host's wall clock only), so a later process on the same host continues them.
    """

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = path or settings.state_dir() / "lease-observed.json"
        self.clock = clock

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            loaded = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _save(self, seen: dict[str, dict[str, Any]]) -> None:
        with contextlib.suppress(OSError):  # without a writable state dir: this process only
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(seen))
            tmp.replace(self.path)

    def unchanged_for(self, lease: Any) -> float:
        """Seconds this host has seen ``lease`` unchanged (0 when it just changed)."""
        key = f"{lease.metadata.namespace}/{lease.metadata.name}"
        version, now = str(lease.metadata.resource_version), self.clock()
        seen = self._load()
        entry = seen.get(key)
        if not entry or entry.get("resource_version") != version:
            seen[key] = {"resource_version": version, "observed_at": now}
            self._save(seen)
            return 0.0
        return max(0.0, now - float(entry.get("observed_at", now)))

    def expired(self, lease: Any) -> bool:
        """Whether ``lease`` has no holder, or has not changed for its duration here."""
        spec = lease.spec
        if not spec or not spec.holder_identity:
            return True
        return self.unchanged_for(lease) > float(spec.lease_duration_seconds or 0)


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
            f"{exc.reason} (hint: the identity needs get on that Lease; see deploy/base/rbac.yaml)"
        ) from exc
    except Exception as exc:  # unreachable API, TLS, timeouts: fail closed
        raise SafetyRefusal(f"refused: cannot read the cluster lease {where}: {exc}") from exc
    current = lease.spec.holder_identity if lease.spec else None
    if current != holder:
        raise SafetyRefusal(
            f"refused: the cluster lease {where} is held by {current or 'nobody'}, "
            f"not by this run ({holder})"
        )
    if LeaseObservations().expired(lease):
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


class LeaseGuard:
    """Re-checks, between the steps of a long action, that this run still holds the lease.

    At every step: the run's own keeper's word (it sets ``FLYWHEEL_RUN_REFUSED`` the moment
    it loses the lease; free, in-process); every ``recheck_s``: the API (:func:`require_lease`).
    A lost lease raises :class:`SafetyRefusal`: the action stops and undoes its own change.
    """

    def __init__(self, configuration: Mapping[str, Any] | None, recheck_s: float = 5.0) -> None:
        self.configuration = configuration
        self.recheck_s = recheck_s
        self.checked = time.monotonic()

    def __call__(self) -> None:
        reason = refused_run()
        if reason:
            raise SafetyRefusal(f"refused: the lease was lost during the action: {reason}")
        if time.monotonic() - self.checked >= self.recheck_s:
            require_lease(self.configuration)
            self.checked = time.monotonic()


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
