"""Chaos Toolkit action: delete the state authority's pods (a pod restart)."""

import logging
import math
import random
import time
from typing import Any

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets
from kubernetes import client
from kubernetes.client.rest import ApiException

from flywheel_chaos.kube.client import API_TIMEOUT, core_api
from flywheel_chaos.kube.pods import Overlap, Owners, VolumeOverlap, wait_pods_gone
from flywheel_chaos.kube.safety import SafetyRefusal, check_namespace_allowed, require_lease
from flywheel_chaos.results import Result

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
    "owner_uids", "gone_s"}], "volume_overlap", "dry_run"}`` (``owner_uids``: the pod's
    controllers, a Deployment's through its ReplicaSet).

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
    owners = Owners(core.api_client)
    deleted = [
        {
            "name": p.metadata.name,
            "uid": p.metadata.uid,
            "node": p.spec.node_name,
            "owner_uids": owners.uids(p),
        }
        for p in chosen
    ]
    if dry_run:
        return {"namespace": namespace, "deleted": deleted, "volume_overlap": [], "dry_run": True}
    require_lease(configuration)
    _delete(core, namespace, chosen, grace_period_s)
    found: list[Overlap] = []
    if wait_gone_s > 0:
        found = _wait_gone(core, namespace, label_selector, chosen, deleted, wait_gone_s)
    return {"namespace": namespace, "deleted": deleted, "volume_overlap": found, "dry_run": False}


def _delete(core: client.CoreV1Api, namespace: str, pods: list[Any], grace_period_s: int) -> None:
    for pod in pods:
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


def _wait_gone(
    core: client.CoreV1Api,
    namespace: str,
    label_selector: str,
    chosen: list[Any],
    deleted: list[dict[str, Any]],
    wait_gone_s: float,
) -> list[Overlap]:
    """Wait until the deleted pods are gone; the single-writer overlaps seen meanwhile."""
    started = time.time()
    overlap = VolumeOverlap(core, namespace, chosen)
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
    return found
