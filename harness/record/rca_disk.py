"""The disk view of an RCA bundle: the lab's node directories, or the opt-in debug pods."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client

from flywheel_chaos import diskview, settings
from flywheel_chaos.kube.client import api_client
from flywheel_chaos.kube.safety import SafetyRefusal, check_namespace_allowed, check_node_allowed
from harness.record.rca_bundle import DEBUG_POD_DEADLINE_S, DISK_ENTRIES

DISK_VIEW_MODES = ("auto", "lab", "debug-pod", "off")


def disk_view_mode(lab_dir: str, requested: str = "") -> str:
    """``requested``, else ``FLYWHEEL_RCA_DISK_VIEW``: ``auto`` (the default: ``lab`` in a
    lab, else ``off``), ``lab`` (read the lab's node directories), ``debug-pod`` (the
    opt-in read-only debug pod, in a lab too) or ``off``. ``ValueError`` for anything else."""
    mode = requested or settings.FLYWHEEL_RCA_DISK_VIEW.get()
    if mode not in DISK_VIEW_MODES:
        raise ValueError(
            f"the disk view {mode!r} (FLYWHEEL_RCA_DISK_VIEW) is not one of "
            f"{', '.join(DISK_VIEW_MODES)}"
        )
    if mode == "auto":
        return "lab" if lab_dir else "off"
    if mode == "lab" and not lab_dir:
        raise ValueError("the disk view 'lab' needs a lab: FLYWHEEL_LAB_DIR names none")
    return mode


def _lab_listing(lab_dir: str, facts: dict[str, Any]) -> tuple[diskview.Listing, list[str]]:
    """The lab's node directories of the authority's volumes, read directly."""
    volumes = {}
    for volume in facts.get("volumes", []):
        for root in sorted(Path(lab_dir).glob(f"nodes/*/volumes/{volume['name']}")):
            volumes[f"{root.parent.parent.name}:{root.name}"] = root
    return diskview.parse(diskview.list_volumes(volumes, limit=DISK_ENTRIES)), list(volumes)


def _debug_pod_listing(
    lab_dir: str, namespace: str, objects: dict[str, Any], remaining_s: float
) -> tuple[diskview.Listing, list[str], list[str], list[dict[str, Any]]]:
    """Each volume's node read by the opt-in read-only debug pod: (listing, volumes, notes,
    the debug pods). ``objects``: what the cluster step read (claims, volumes, pods, nodes).

    A debug pod is a change to the cluster, so the safety rules hold: none on a node outside
    the node allowlist, none in a namespace outside the namespace allowlist (the helper
    namespace of the opt-in is the harness's own, as for the kubelet-stop helper)."""
    missing = [k for k in ("claims", "volumes", "pods", "nodes") if k not in objects]
    if missing:
        return (
            diskview.Listing(),
            [],
            [f"no debug pod: the cluster step did not read the {', '.join(missing)} it needs"],
            [],
        )
    helper_namespace = settings.FLYWHEEL_RCA_HELPER_NAMESPACE.get()
    planned, notes = diskview.plan(
        namespace,
        objects["claims"],
        objects["volumes"],
        objects["pods"],
        objects["nodes"],
        helper_namespace,
        settings.FLYWHEEL_KUBELET_ROOT.get(),
    )
    allowed = []
    for debug in planned:
        try:
            check_node_allowed(debug.node, None)
            if debug.namespace != helper_namespace:
                check_namespace_allowed(debug.namespace, None)
        except SafetyRefusal as refusal:
            notes.append(f"no debug pod on {debug.node}: {refusal}")
            continue
        allowed.append(debug)
    planned = allowed
    core = client.CoreV1Api(api_client())
    image = settings.FLYWHEEL_RCA_DEBUG_IMAGE.get()

    def lab_log(pod: Any) -> str:
        # the lab has no kubelet API: the helper's log is a file on its node
        node = Path(lab_dir) / "nodes" / str(pod.spec.node_name) / "pods"
        log = node / str(pod.metadata.uid)[:13] / f"{diskview.CONTAINER}.log"
        return log.read_text(errors="replace")[: diskview.LOG_LIMIT_BYTES]

    budget = min(DEBUG_POD_DEADLINE_S, remaining_s)
    if planned and budget < 5:
        notes.append("the debug pods: skipped, the RCA's deadline leaves no time for them")
        planned = []
    pods_run = [
        {
            "namespace": debug.namespace,
            "node": debug.node,
            "volumes": {m.volume: m.host_path or f"claim {m.claim}" for m in debug.mounts},
        }
        for debug in planned
    ]
    listing = diskview.Listing(complete=True)
    read: list[str] = []
    reader = lab_log if lab_dir else diskview.api_log(core)
    # one per node, side by side: a slow image pull on one node does not starve the others
    with ThreadPoolExecutor(max_workers=max(1, len(planned))) as pool:
        runs = list(pool.map(lambda d: diskview.run(core, d, image, budget, reader), planned))
    for debug, (one, note) in zip(planned, runs, strict=True):
        if note:
            notes.append(note)
        for entry in one.entries:
            listing.entries.append({**entry, "path": f"{debug.node}:{entry['path']}"})
        listing.missing += [f"{debug.node}:{m}" for m in one.missing]
        listing.cut = listing.cut or one.cut
        listing.errors += one.errors
        read += [f"{debug.node}:{m.volume}" for m in debug.mounts if one.complete]
    return listing, read, notes, pods_run


def disk_view(
    mode: str,
    lab_dir: str,
    namespace: str,
    facts: dict[str, Any],
    objects: dict[str, Any],
    bucket: str,
    remaining_s: float,
) -> dict[str, Any]:
    """What is on the authority's volumes: bucket markers and metadata files, never contents."""
    if mode == "off":
        return {
            "collected": False,
            "why": "off outside a lab unless opted in: FLYWHEEL_RCA_DISK_VIEW=debug-pod starts a "
            "read-only debug pod on each volume's node (deploy/components/disk-view)",
        }
    notes: list[str] = []
    pods: list[dict[str, Any]] = []
    if mode == "lab":
        listing, volumes = _lab_listing(lab_dir, facts)
    else:
        listing, volumes, notes, pods = _debug_pod_listing(lab_dir, namespace, objects, remaining_s)
    markers: list[str] = []
    collection = re.compile(rf"{re.escape(bucket)}(-kept)?_\d+\.\w+")
    entries = listing.entries[:DISK_ENTRIES]
    for entry in entries:
        # "<node>:<volume>/<path in the volume>"
        parts = str(entry["path"]).split("/")[1:]
        # a directory named after the bucket, or a SeaweedFS volume file of its collection
        # (<bucket>_N.dat; <bucket>-kept_N.dat is bucket-index-loss's): a prefix alone
        # would count tofu-state-backup's files as tofu-state's
        if bucket in parts or (not entry["dir"] and parts and collection.fullmatch(parts[-1])):
            markers.append(str(entry["path"]))
    return {
        "collected": bool(volumes),
        "how": mode,
        "volumes": volumes,
        **({"debug_pods": pods} if mode == "debug-pod" else {}),
        "entries": entries,
        "bucket_markers": markers[:200],
        "bucket_marker_count": len(markers),
        "cut": listing.cut or len(listing.entries) > DISK_ENTRIES,
        "missing": listing.missing,
        "notes": notes + listing.errors[:20],
        **({} if volumes else {"why": "; ".join(notes) or "no volume of the authority found"}),
    }
