"""What the state authority is right now: its fingerprint and its HA posture, read from the cluster.

**Which workloads.** The state authority lives in ``FLYWHEEL_STATE_NAMESPACE``
(default ``nix-cache``). Its workloads are the serving workload
``FLYWHEEL_STATE_DEPLOYMENT`` (default ``attic-rustfs-openebs``, a Deployment
or a StatefulSet of that name; its Service of the same name is the S3
endpoint) and every Deployment or StatefulSet in that namespace labelled
``app.kubernetes.io/part-of=tofu-state-authority`` (its metadata store,
masters, volume servers...). Their claims are read from the pod template's
``persistentVolumeClaim`` volumes (Deployment and StatefulSet) and, for a
StatefulSet, from its ``volumeClaimTemplates`` (``<template>-<name>-<ordinal>``
for each replica); a claim's pinned nodes are the ``In`` values of its
PersistentVolume's required node affinity.

**Fingerprint.** What a record was measured against: cluster identity (the
``kube-system`` namespace UID; the API server URL is recorded, not compared: it is how
the process reached the cluster), each workload (kind,
namespace, name, UID, replicas, SHA-256 of its pod template spec, image
digests), each claim (name, access modes, storage class, pinned nodes),
endpoint, bucket, key and the harness version. The gate counts only records
whose fingerprint equals the live one, and :func:`differences` says what
changed when it does not.

**Posture.** The live facts the gate's HA rows need: ready endpoints and
their nodes, whether one node holds every volume, which ReadWriteOnce claims
a Deployment restart would share, and how many nodes can host the volumes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from flywheel_chaos import settings
from flywheel_chaos.kube.client import API_TIMEOUT, api_client

PART_OF = "tofu-state-authority"
ZFS_PROVISIONER = "zfs.csi.openebs.io"


@dataclass(frozen=True)
class Target:
    """Where the state authority lives in the cluster."""

    namespace: str = "nix-cache"
    serving: str = "attic-rustfs-openebs"
    part_of: str = PART_OF

    @classmethod
    def from_env(cls, namespace: str = "", serving: str = "") -> Target:
        return cls(
            namespace=namespace or settings.FLYWHEEL_STATE_NAMESPACE.get(),
            serving=serving or settings.FLYWHEEL_STATE_DEPLOYMENT.get() or "attic-rustfs-openebs",
            part_of=settings.FLYWHEEL_STATE_PART_OF.get(),
        )


def _digests(images: list[str], statuses: list[Any]) -> list[str]:
    found = []
    for image in images:
        if "@sha256:" in image:
            found.append(image.split("@", 1)[1])
            continue
        running = [
            s.image_id.split("@", 1)[1]
            for s in statuses
            if s.image == image and s.image_id and "@sha256:" in s.image_id
        ]
        found.append(running[0] if running else f"unpinned:{image}")
    return sorted(set(found))


def _template_sha256(api: client.ApiClient, template: Any) -> str:
    spec = api.sanitize_for_serialization(template.spec)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _workloads(api: client.ApiClient, target: Target) -> list[tuple[str, Any]]:
    apps = client.AppsV1Api(api)
    found: dict[tuple[str, str], Any] = {}
    for kind, lister in (
        ("Deployment", apps.list_namespaced_deployment),
        ("StatefulSet", apps.list_namespaced_stateful_set),
    ):
        for item in lister(target.namespace, _request_timeout=API_TIMEOUT).items:
            labels = item.metadata.labels or {}
            if (
                item.metadata.name == target.serving
                or labels.get("app.kubernetes.io/part-of") == target.part_of
            ):
                found[(kind, item.metadata.name)] = item
    return [(kind, found[(kind, name)]) for kind, name in sorted(found)]


def _claim_names(kind: str, workload: Any) -> list[str]:
    names = [
        v.persistent_volume_claim.claim_name
        for v in workload.spec.template.spec.volumes or []
        if v.persistent_volume_claim is not None
    ]
    if kind == "StatefulSet":
        for template in workload.spec.volume_claim_templates or []:
            names += [
                f"{template.metadata.name}-{workload.metadata.name}-{i}"
                for i in range(workload.spec.replicas or 0)
            ]
    return names


def _claim(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "access_modes": [],
        "storage_class": None,
        "volume": None,
        "pinned_nodes": [],
        "provisioner": None,
    }
    try:
        claim = core.read_namespaced_persistent_volume_claim(
            name, namespace, _request_timeout=API_TIMEOUT
        )
    except ApiException as exc:
        if exc.status == 404:
            entry["missing"] = True
            return entry
        raise
    entry["phase"] = claim.status.phase if claim.status else None
    entry["access_modes"] = sorted(claim.spec.access_modes or [])
    entry["storage_class"] = claim.spec.storage_class_name
    entry["volume"] = claim.spec.volume_name
    if claim.spec.volume_name:
        pv = core.read_persistent_volume(claim.spec.volume_name, _request_timeout=API_TIMEOUT)
        entry["provisioner"] = pv.spec.csi.driver if pv.spec.csi else None
        required = pv.spec.node_affinity.required if pv.spec.node_affinity else None
        nodes: list[str] = []
        for term in (required.node_selector_terms if required else None) or []:
            for expression in term.match_expressions or []:
                if expression.operator == "In":
                    nodes += list(expression.values or [])
        entry["pinned_nodes"] = sorted(set(nodes))
    return entry


def _describe(api: Any, namespace: str, kind: str, item: Any, pods: list[Any]) -> dict[str, Any]:
    """One workload as the fingerprint holds it (images by the digests its pods run)."""
    selector = item.spec.selector.match_labels or {}
    own = [
        p
        for p in pods
        if selector and all((p.metadata.labels or {}).get(k) == v for k, v in selector.items())
    ]
    statuses = [s for p in own for s in (p.status.container_statuses or [])]
    return {
        "kind": kind,
        "namespace": namespace,
        "name": item.metadata.name,
        "uid": item.metadata.uid,
        "replicas": item.spec.replicas,
        "ready_replicas": (item.status.ready_replicas or 0) if item.status else 0,
        "template_sha256": _template_sha256(api, item.spec.template),
        "images": _digests([c.image for c in item.spec.template.spec.containers], statuses),
    }


def _ready_endpoints(api: Any, where: Target) -> list[Any]:
    slices = (
        client.DiscoveryV1Api(api)
        .list_namespaced_endpoint_slice(
            where.namespace,
            label_selector=f"kubernetes.io/service-name={where.serving}",
            _request_timeout=API_TIMEOUT,
        )
        .items
    )
    return [
        e
        for s in slices
        for e in s.endpoints or []
        if e.conditions is None or e.conditions.ready is not False
    ]


def _zfs_nodes(api: Any) -> list[str] | None:
    try:
        zfs = client.CustomObjectsApi(api).list_cluster_custom_object(
            "zfs.openebs.io", "v1", "zfsnodes", _request_timeout=API_TIMEOUT
        )
    except ApiException:
        return None
    return sorted(i["metadata"]["name"] for i in zfs.get("items", []))


def read_target(target: Target | None = None) -> dict[str, Any]:
    """Everything the fingerprint and the posture need, read once; ``error`` when unreadable."""
    where = target or Target.from_env()
    facts: dict[str, Any] = {"namespace": where.namespace, "deployment": where.serving}
    try:
        api = api_client()
        core = client.CoreV1Api(api)
        system = core.read_namespace("kube-system", _request_timeout=API_TIMEOUT)
        facts["cluster"] = {
            "kube_system_uid": system.metadata.uid,
            "api_server": api.configuration.host,
        }
        workloads = _workloads(api, where)
        pods = core.list_namespaced_pod(where.namespace, _request_timeout=API_TIMEOUT).items
        facts["workloads"] = [_describe(api, where.namespace, k, i, pods) for k, i in workloads]
        claim_names = [n for kind, item in workloads for n in _claim_names(kind, item)]
        deployment_claims = {
            n for kind, item in workloads if kind == "Deployment" for n in _claim_names(kind, item)
        }
        claims = [_claim(core, where.namespace, n) for n in sorted(set(claim_names))]
        for entry in claims:
            entry["restart_shares"] = entry["name"] in deployment_claims and entry[
                "access_modes"
            ] == ["ReadWriteOnce"]
        facts["claims"] = claims
        ready = _ready_endpoints(api, where)
        facts["ready_endpoints"] = len(ready)
        facts["endpoint_nodes"] = sorted({e.node_name for e in ready if e.node_name})
        facts["openebs_zfs_nodes"] = _zfs_nodes(api)
    except ApiException as exc:
        facts["error"] = (
            f"reading the state authority in {where.namespace}: {exc.status} {exc.reason}"
        )
    except Exception as exc:  # no kubeconfig, unreachable API
        facts["error"] = f"reading the state authority in {where.namespace}: {exc}"
    return facts


def unknown_claims(claims: list[dict[str, Any]]) -> list[str]:
    """Claims whose node is not known, each with why: missing, not Bound, or unpinned (a
    volume without node affinity). None of them may clear "data only on one node"."""
    found = []
    for claim in claims:
        if claim.get("missing"):
            found.append(f"{claim['name']} is missing")
        elif claim.get("phase") not in (None, "Bound"):
            found.append(f"{claim['name']} is {claim.get('phase')}")
        elif not claim.get("volume"):
            found.append(f"{claim['name']} is bound to no volume")
        elif not claim.get("pinned_nodes"):
            found.append(f"{claim['name']}'s volume {claim['volume']} has no node affinity")
    return found


def posture(facts: dict[str, Any]) -> dict[str, Any]:
    """The HA facts the gate judges, derived from :func:`read_target`'s facts."""
    if "error" in facts:
        return {"error": facts["error"]}
    claims = facts["claims"]
    serving = next((w for w in facts["workloads"] if w["name"] == facts["deployment"]), None)
    pinned = [set(c["pinned_nodes"]) for c in claims if c["pinned_nodes"]]
    unknown = unknown_claims(claims)
    holders = set().union(*pinned) if pinned else set()
    single = sorted(holders) if len(holders) == 1 else []
    volume_nodes = set(holders)
    if any(c.get("provisioner") == ZFS_PROVISIONER for c in claims):
        volume_nodes.update(facts.get("openebs_zfs_nodes") or [])
    return {
        "replicas": serving["replicas"] if serving else None,
        "ready_endpoints": facts["ready_endpoints"],
        "endpoint_nodes": facts["endpoint_nodes"],
        "claims": [c["name"] for c in claims],
        "unknown_claims": unknown,
        "data_only_on": single,
        "restart_shares_volume": [c["name"] for c in claims if c["restart_shares"]],
        "volume_nodes": sorted(volume_nodes),
        "interim_posture": serving is not None
        and serving["replicas"] == 1
        and any(
            "ReadWriteOnce" in c["access_modes"] and len(c["pinned_nodes"]) == 1 for c in claims
        ),
        "image_pinned_by_digest": all(
            not d.startswith("unpinned:") for w in facts["workloads"] for d in w["images"]
        ),
    }


def fingerprint(facts: dict[str, Any], endpoint: str, bucket: str, key: str) -> dict[str, Any]:
    """The record's fingerprint of its target (``error`` when the cluster could not be read).

    It holds what the evidence is about (cluster, workloads with their image digests,
    claims, endpoint, bucket, key), not the harness's version: a record keeps counting
    across releases while its verdict rules are today's (the record's ``rules_version``)."""
    base = {"endpoint": endpoint, "bucket": bucket, "key": key}
    if "error" in facts:
        return {**base, "error": facts["error"]}
    return {
        **base,
        "cluster": facts["cluster"],
        "workloads": [
            {
                k: w[k]
                for k in (
                    "kind",
                    "namespace",
                    "name",
                    "uid",
                    "replicas",
                    "template_sha256",
                    "images",
                )
            }
            for w in facts["workloads"]
        ],
        "claims": [
            {k: c[k] for k in ("name", "access_modes", "storage_class", "pinned_nodes")}
            for c in facts["claims"]
        ],
    }


def differences(recorded: dict[str, Any] | None, live: dict[str, Any]) -> list[str]:
    """What changed from a recorded fingerprint to the live one (empty: they match)."""
    if not recorded:
        return ["the record has no fingerprint"]
    if "error" in recorded:
        return [f"the record's target could not be read ({recorded['error']})"]
    if "error" in live:
        return [f"the live target cannot be read ({live['error']})"]
    changes = []
    old_cluster, new_cluster = recorded.get("cluster") or {}, live.get("cluster") or {}
    # the cluster is its kube-system UID; the API server's URL is only how this process
    # reached it (a game day in a pod reaches it through the kubernetes Service, the gate on
    # a laptop through a kubeconfig), so it is recorded but never compared
    if old_cluster.get("kube_system_uid") != new_cluster.get("kube_system_uid"):
        changes.append("another cluster (kube-system UID differs)")
    old = {(w["kind"], w["name"]): w for w in recorded.get("workloads") or []}
    new = {(w["kind"], w["name"]): w for w in live.get("workloads") or []}
    for kind, name in sorted(set(old) - set(new)):
        changes.append(f"{kind} {name} is gone")
    for kind, name in sorted(set(new) - set(old)):
        changes.append(f"{kind} {name} is new")
    for ident in sorted(set(old) & set(new)):
        a, b = old[ident], new[ident]
        label = f"{ident[0]} {ident[1]}"
        if a.get("uid") != b.get("uid"):
            changes.append(f"{label} was recreated (UID changed)")
        if a.get("replicas") != b.get("replicas"):
            changes.append(f"{label} replicas {a.get('replicas')} -> {b.get('replicas')}")
        if a.get("images") != b.get("images"):
            changes.append(f"{label} image digest changed")
        elif a.get("template_sha256") != b.get("template_sha256"):
            changes.append(f"{label} pod template changed")
    old_claims = {c["name"]: c for c in recorded.get("claims") or []}
    new_claims = {c["name"]: c for c in live.get("claims") or []}
    if set(old_claims) != set(new_claims):
        changes.append(f"claims {sorted(old_claims)} -> {sorted(new_claims)}")
    else:
        for name in sorted(old_claims):
            if old_claims[name] != new_claims[name]:
                changes.append(f"claim {name} changed (access modes, class or pinned nodes)")
    for field_name in ("endpoint", "bucket", "key"):
        if recorded.get(field_name) != live.get(field_name):
            changes.append(
                f"{field_name.replace('_', ' ')} {recorded.get(field_name)} -> {live.get(field_name)}"
            )
    return changes
