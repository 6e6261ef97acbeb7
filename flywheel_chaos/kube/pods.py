"""Pods: the one "displaceable" predicate, the wait for pods to go, single-writer overlap."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Final, TypedDict

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from flywheel_chaos.kube.client import API_TIMEOUT

__all__ = [
    "Overlap",
    "Owned",
    "Owners",
    "VolumeOverlap",
    "controller_kind",
    "ident",
    "not_displaced_because",
    "pods_on_node",
    "wait_pods_gone",
]

logger = logging.getLogger("flywheel_chaos.kube")

SINGLE_WRITER_MODES: Final = frozenset({"ReadWriteOnce", "ReadWriteOncePod"})


def ident(pod: Any) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def controller_kind(pod: Any) -> str | None:
    for owner in pod.metadata.owner_references or []:
        if owner.controller:
            return str(owner.kind)
    return None


def not_displaced_because(pod: Any) -> str | None:
    """Why a drain or a lost node does not displace ``pod`` (None: it does).

    The one predicate both the drain and the node faults use, as ``kubectl drain`` has it:
    terminating, mirror, DaemonSet and finished pods stay where they are.
    """
    if pod.metadata.deletion_timestamp is not None:
        return "already terminating"
    if "kubernetes.io/config.mirror" in (pod.metadata.annotations or {}):
        return "mirror pod"
    if controller_kind(pod) == "DaemonSet":
        return "DaemonSet pod"
    if pod.status and pod.status.phase in ("Succeeded", "Failed"):
        return f"finished ({pod.status.phase})"
    return None


class Owned(TypedDict):
    """A pod a fault touched, with the UIDs of the controllers it belongs to (its own, and,
    for a ReplicaSet's pod, the Deployment above it): how the gate ties a fault to the
    state authority's workloads."""

    pod: str
    uid: str
    node: str | None
    owner_uids: list[str]


class Owners:
    """Resolves pods' controller chains (ReplicaSet -> Deployment), each ReplicaSet read once."""

    def __init__(self, api: client.ApiClient) -> None:
        self.apps = client.AppsV1Api(api)
        self._replica_sets: dict[tuple[str, str], list[str]] = {}

    def uids(self, pod: Any) -> list[str]:
        found: list[str] = []
        for owner in pod.metadata.owner_references or []:
            if not owner.controller:
                continue
            found.append(str(owner.uid))
            if owner.kind == "ReplicaSet":
                found += self._above(pod.metadata.namespace, owner.name)
        return found

    def _above(self, namespace: str, name: str) -> list[str]:
        key = (namespace, name)
        if key not in self._replica_sets:
            try:
                rs = self.apps.read_namespaced_replica_set(
                    name, namespace, _request_timeout=API_TIMEOUT
                )
                refs = rs.metadata.owner_references or []
                self._replica_sets[key] = [str(r.uid) for r in refs if r.controller]
            except ApiException as exc:  # unreadable (403): only the ReplicaSet is known
                logger.info("cannot read ReplicaSet %s/%s (%s)", namespace, name, exc.status)
                self._replica_sets[key] = []
        return self._replica_sets[key]

    def owned(self, pod: Any) -> Owned:
        return Owned(
            pod=ident(pod),
            uid=str(pod.metadata.uid),
            node=pod.spec.node_name,
            owner_uids=self.uids(pod),
        )


def pods_on_node(core: client.CoreV1Api, node: str) -> list[Any]:
    return list(
        core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={node}", _request_timeout=API_TIMEOUT
        ).items
    )


def wait_pods_gone(
    core: client.CoreV1Api,
    uids: list[str],
    deadline: float,
    namespace: str = "",
    field_selector: str = "",
    label_selector: str = "",
    observe: Callable[[Any], None] | None = None,
    between: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Wait, by watching, until the pods ``uids`` are deleted; returns uid -> epoch when gone.

    Lists once, then watches from that list's resourceVersion (re-listing after a broken
    watch). Pods still present at ``deadline`` (a :func:`time.monotonic` instant) are
    missing from the result: the caller names them. ``observe``, when given, sees every pod
    object listed or watched meanwhile (replacements included), as it arrives.
    """
    gone: dict[str, float] = {}
    waiting = set(uids)
    selectors = {"field_selector": field_selector or None, "label_selector": label_selector or None}
    lister = (
        functools.partial(core.list_namespaced_pod, namespace)
        if namespace
        else core.list_pod_for_all_namespaces
    )
    window = 5.0 if between is not None else 30.0
    while waiting:
        if between is not None:
            between()
        pods = lister(**selectors, _request_timeout=API_TIMEOUT)
        if observe is not None:
            for pod in pods.items:
                observe(pod)
        for uid in waiting - {p.metadata.uid for p in pods.items}:
            gone[uid] = time.time()
        waiting -= set(gone)
        remaining = deadline - time.monotonic()
        if not waiting or remaining <= 0:
            break
        _watch_gone(
            lister,
            selectors,
            pods.metadata.resource_version,
            min(remaining, window),
            deadline,
            waiting,
            gone,
            observe,
        )
    return gone


def _watch_gone(
    lister: Callable[..., Any],
    selectors: dict[str, Any],
    resource_version: str,
    remaining: float,
    deadline: float,
    waiting: set[str],
    gone: dict[str, float],
    observe: Callable[[Any], None] | None,
) -> None:
    stream = watch.Watch()
    try:
        for event in stream.stream(
            lister,
            **selectors,
            resource_version=resource_version,
            timeout_seconds=max(1, int(min(remaining, 30))),
            _request_timeout=(3.0, min(remaining, 30) + 5),
        ):
            deleted = getattr(getattr(event["object"], "metadata", None), "uid", None)
            if observe is not None and event["type"] in ("ADDED", "MODIFIED"):
                observe(event["object"])
            if event["type"] == "DELETED" and deleted in waiting:
                gone[str(deleted)] = time.time()
                waiting.discard(str(deleted))
            if not waiting or time.monotonic() >= deadline:
                break
    except Exception as exc:  # a broken watch: the next list catches up
        logger.debug("watch ended: %s", exc)
    finally:
        stream.stop()


def claims(pod: Any) -> set[str]:
    return {
        v.persistent_volume_claim.claim_name
        for v in (pod.spec.volumes or [])
        if v.persistent_volume_claim is not None
    }


def _running(pod: Any) -> bool:
    return any(
        status.state is not None and status.state.running is not None
        for status in (pod.status.container_statuses or [])
    )


def single_writer(core: client.CoreV1Api, namespace: str, claim: str) -> bool:
    """Whether ``claim`` is ReadWriteOnce/ReadWriteOncePod (unreadable: not checked, False)."""
    try:
        pvc = core.read_namespaced_persistent_volume_claim(
            claim, namespace, _request_timeout=API_TIMEOUT
        )
    except ApiException as exc:
        logger.info(
            "cannot read claim %s/%s (%s): not checked for overlap", namespace, claim, exc.status
        )
        return False
    modes = set(pvc.spec.access_modes or []) | set(
        (pvc.status.access_modes or []) if pvc.status else []
    )
    return bool(modes) and modes <= SINGLE_WRITER_MODES


class Overlap(TypedDict):
    claim: str
    deleted_pod: str
    replacement_pod: str
    overlap_s: float


class VolumeOverlap:
    """Replacement pods seen running on a single-writer claim that a deleted pod still held."""

    def __init__(self, core: client.CoreV1Api, namespace: str, deleted: list[Any]) -> None:
        self._deleted = {p.metadata.uid: (p.metadata.name, claims(p)) for p in deleted}
        held = set().union(*(held for _, held in self._deleted.values()))
        self._single_writer = {c for c in held if single_writer(core, namespace, c)}
        self._first_running: dict[str, tuple[str, set[str], float]] = {}

    def observe(self, pod: Any) -> None:
        uid = pod.metadata.uid
        if uid in self._deleted or uid in self._first_running or not _running(pod):
            return
        shared = claims(pod) & self._single_writer
        if shared:
            self._first_running[uid] = (pod.metadata.name, shared, time.time())

    def overlaps(self, gone: dict[str, float]) -> list[Overlap]:
        """Each (deleted pod, replacement, shared claim) where the replacement ran first."""
        return [
            {
                "claim": claim,
                "deleted_pod": name,
                "replacement_pod": replacement,
                "overlap_s": round(gone[uid] - since, 3),
            }
            for uid, (name, held) in self._deleted.items()
            for replacement, shared, since in self._first_running.values()
            if since < gone[uid]
            for claim in sorted(held & shared)
        ]
