"""Chaos Toolkit action: delete the state authority's pods (a pod restart)."""

import logging
import math
import random
import time
from typing import Any, Dict  # noqa: UP035 - chaos discover types only typing.Dict as "mapping"

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets
from kubernetes import client
from kubernetes.client.rest import ApiException

from actions.cluster import (
    API_TIMEOUT,
    SafetyRefusal,
    check_namespace_allowed,
    core_api,
    require_lease,
    wait_pods_gone,
)

Result = Dict[str, Any]  # noqa: UP006

__all__ = ["delete_state_authority_pods"]

logger = logging.getLogger("flywheel_chaos.actions")


def delete_state_authority_pods(
    namespace: str = "nix-cache",
    label_selector: str = "app.kubernetes.io/name=attic-rustfs-openebs",
    count: int = 1,
    percentage: int = 0,
    grace_period_s: int = -1,
    wait_gone_s: float = 60.0,
    dry_run: bool = False,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Delete running pods of the state authority so that their controller restarts them.

    Picks ``count`` pods (or ``percentage`` of them, rounded up, when > 0)
    matching ``label_selector`` in ``namespace``, without replacement, and
    deletes them with ``grace_period_s`` (-1: the pod's own), then waits at
    most ``wait_gone_s`` until they are gone (a terminating pod may still
    serve its open connections, so the restart is complete only then; 0: do
    not wait). Returns ``{"namespace", "deleted": [{"name", "uid", "node",
    "gone_s"}], "volume_overlap", "dry_run"}``.

    While it waits it also checks that the restart kept each single-writer
    volume single-writer: ``volume_overlap`` lists every replacement pod that
    was running on a ReadWriteOnce claim of a deleted pod before that pod was
    gone (``{"claim", "deleted_pod", "replacement_pod", "overlap_s"}``). A
    Deployment does this on every restart, because ReadWriteOnce is per node,
    not per pod: for that time two servers write one data directory.
    ReadWriteOncePod claims, or a StatefulSet, prevent it. Raises
    ``ActivityFailed`` when the namespace is not allowlisted, nothing
    matches, the arguments are out of range, or a pod is still there at the
    deadline.
    """
    check_namespace_allowed(namespace, configuration)
    if count < 1 or not 0 <= percentage <= 100:
        raise SafetyRefusal(
            f"refused: count must be >= 1 and percentage 0..100 (got {count}, {percentage})"
        )
    core = core_api(configuration)
    pods = [
        p
        for p in core.list_namespaced_pod(
            namespace, label_selector=label_selector, _request_timeout=API_TIMEOUT
        ).items
        if p.metadata.deletion_timestamp is None
    ]
    if not pods:
        raise ActivityFailed(
            f"no pod in {namespace} matches {label_selector!r} (hint: check the selector)"
        )
    wanted = math.ceil(len(pods) * percentage / 100) if percentage else count
    chosen = random.sample(pods, min(wanted, len(pods)))
    deleted = [
        {"name": p.metadata.name, "uid": p.metadata.uid, "node": p.spec.node_name} for p in chosen
    ]
    if dry_run:
        return {"namespace": namespace, "deleted": deleted, "volume_overlap": [], "dry_run": True}
    require_lease(configuration)
    for pod in chosen:
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.metadata.uid))
        if grace_period_s >= 0:
            options.grace_period_seconds = grace_period_s
        try:
            core.delete_namespaced_pod(
                pod.metadata.name, namespace, body=options, _request_timeout=API_TIMEOUT
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise ActivityFailed(
                    f"deleting {namespace}/{pod.metadata.name} failed: {exc.status} {exc.reason}"
                ) from exc
        logger.info("deleted pod %s/%s on %s", namespace, pod.metadata.name, pod.spec.node_name)
    found: list[Dict[str, Any]] = []  # noqa: UP006
    if wait_gone_s > 0:
        started = time.time()
        overlap = _VolumeOverlap(core, namespace, chosen)
        gone = wait_pods_gone(
            core,
            [d["uid"] for d in deleted],
            time.monotonic() + wait_gone_s,
            namespace=namespace,
            label_selector=label_selector,
            observe=overlap.observe,
        )
        for entry in deleted:
            if entry["uid"] in gone:
                entry["gone_s"] = round(gone[entry["uid"]] - started, 3)
        left = [d["name"] for d in deleted if d["uid"] not in gone]
        if left:
            raise ActivityFailed(
                f"deleted pod(s) {', '.join(left)} still present after {wait_gone_s:g}s (hint: is the node agent/kubelet alive?)"
            )
        found = overlap.overlaps(gone)  # every deleted pod is gone by now
        for finding in found:
            logger.warning(
                "replacement %s ran on claim %s for %.1f s while the deleted pod %s still held it",
                finding["replacement_pod"],
                finding["claim"],
                finding["overlap_s"],
                finding["deleted_pod"],
            )
    return {"namespace": namespace, "deleted": deleted, "volume_overlap": found, "dry_run": False}


_SINGLE_WRITER_MODES = {"ReadWriteOnce", "ReadWriteOncePod"}


def _claims(pod: Any) -> set[str]:
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


class _VolumeOverlap:
    """Replacement pods seen running on a single-writer claim that a deleted pod still held."""

    def __init__(self, core: client.CoreV1Api, namespace: str, deleted: list[Any]) -> None:
        self._deleted = {p.metadata.uid: (p.metadata.name, _claims(p)) for p in deleted}
        held = set().union(*(claims for _, claims in self._deleted.values()))
        self._single_writer = {c for c in held if _single_writer(core, namespace, c)}
        self._first_running: dict[str, tuple[str, set[str], float]] = {}

    def observe(self, pod: Any) -> None:
        uid = pod.metadata.uid
        if uid in self._deleted or uid in self._first_running or not _running(pod):
            return
        shared = _claims(pod) & self._single_writer
        if shared:
            self._first_running[uid] = (pod.metadata.name, shared, time.time())

    def overlaps(self, gone: Dict[str, float]) -> list[Dict[str, Any]]:  # noqa: UP006
        """Each (deleted pod, replacement, shared claim) where the replacement ran first."""
        return [
            {
                "claim": claim,
                "deleted_pod": name,
                "replacement_pod": replacement,
                "overlap_s": round(gone[uid] - since, 3),
            }
            for uid, (name, claims) in self._deleted.items()
            for replacement, shared, since in self._first_running.values()
            if since < gone[uid]
            for claim in sorted(claims & shared)
        ]


def _single_writer(core: client.CoreV1Api, namespace: str, claim: str) -> bool:
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
    return bool(modes) and modes <= _SINGLE_WRITER_MODES
