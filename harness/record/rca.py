"""RCA bundles: the evidence that explains a failed run, captured while it is still there.

A bundle is a ``tar.gz`` with

* ``k8s/``: the state authority's pods (spec, status, conditions, restart
  counts), their container logs (current and previous, tail-bounded; in the
  lab also the logs of pods already gone, such as the one a restart replaced),
  the events of its namespace and of the nodes, EndpointSlices, claims and
  their volumes, node conditions and taints;
* ``s3/view.json``: ListBuckets, HeadBucket, HEAD of the state key and its
  ListObjectVersions, each answer or classified error, and the record's
  outage windows with the error classes first seen in each;
* ``disk/listing.json``: the bucket markers and object metadata files on the
  authority's volumes, with sizes and SHA-256 (never contents). In the lab the
  node's volume directories are read directly; on a real cluster, opted in
  with ``FLYWHEEL_RCA_DISK_VIEW=debug-pod``, a read-only debug pod on each
  volume's node lists them (:mod:`flywheel_chaos.diskview`; the lab's node agent plays
  it too); otherwise the bundle says it has no disk view and how to get one;
* ``rca.md``: a summary that puts the S3 view and the disk view side by side
  and names the mismatch when there is one ("NoSuchBucket from S3; bucket
  markers present on disk"), pods that could not be scheduled and why, restarts.

Everything is redacted (:mod:`harness.record.redact`). Collection is bounded:
every API and S3 call has its timeout, the whole collection a deadline, logs a
tail and the bundle a size (``max_bytes``); what does not fit is cut with a
note in ``rca.md``, and nothing here ever fails the run that asked for it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import tarfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from flywheel_chaos import diskview, settings
from flywheel_chaos.kube.client import API_TIMEOUT, api_client
from flywheel_chaos.kube.safety import SafetyRefusal, check_namespace_allowed, check_node_allowed
from flywheel_chaos.s3.authority import StateAuthority
from flywheel_chaos.s3.client import call_with_retries
from flywheel_chaos.s3.errors import StateAuthorityError
from harness.record.posture import Target
from harness.record.redact import Redactor, known_secrets

LOG_TAIL_LINES = 200
LOG_TAIL_BYTES = 64 * 1024
MAX_BYTES = 20 * 1024 * 1024
DEADLINE_S = 60.0
DISK_ENTRIES = diskview.ENTRIES
DEBUG_POD_DEADLINE_S = 30.0
"""How long one read-only debug pod may take, from its creation to its listing."""


@dataclass
class Bundle:
    """What is collected, file by file, with the notes of what was cut or skipped."""

    files: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    deadline_s: float = DEADLINE_S

    def out_of_time(self) -> bool:
        return time.monotonic() - self.started > self.deadline_s

    def add_json(self, name: str, document: Any, redactor: Redactor) -> None:
        self.files[name] = json.dumps(redactor.document(document), indent=2, default=str).encode()

    def step(self, what: str, fn: Callable[[], None]) -> None:
        if self.out_of_time():
            self.notes.append(f"{what}: skipped, the {self.deadline_s:g} s deadline was reached")
            return
        try:
            fn()
        except Exception as exc:  # an RCA never fails the run: say what is missing
            self.notes.append(f"{what}: not collected ({type(exc).__name__}: {exc})")


def _tail(text: str) -> str:
    lines = text.splitlines()[-LOG_TAIL_LINES:]
    joined = "\n".join(lines)
    return joined[-LOG_TAIL_BYTES:]


def _split_restarts(text: str) -> tuple[str, str]:
    """The lab's container log holds every start: (current, previous) run."""
    marker = "--- start "
    parts = text.split(marker)
    if len(parts) <= 1:
        return text, ""
    current = marker + parts[-1]
    previous = marker + parts[-2] if len(parts) > 2 else ""
    return current, previous


def _k8s(
    bundle: Bundle, target: Target, redactor: Redactor, lab_dir: str, objects: dict[str, Any]
) -> dict[str, Any]:
    """The cluster part of the bundle; its facts for the summary. ``objects`` receives the
    API objects read (``pods``, ``claims``, ``volumes``, ``nodes``) for the disk view."""
    api = api_client()
    core = client.CoreV1Api(api)
    facts: dict[str, Any] = {}
    sanitize = api.sanitize_for_serialization
    namespace = target.namespace

    def pods() -> None:
        items = core.list_namespaced_pod(namespace, _request_timeout=API_TIMEOUT).items
        objects["pods"] = items
        facts["pods"] = [
            {
                "name": p.metadata.name,
                "uid": p.metadata.uid,
                "node": p.spec.node_name,
                "phase": p.status.phase if p.status else None,
                "conditions": sanitize(p.status.conditions) if p.status else None,
                "restarts": {s.name: s.restart_count for s in (p.status.container_statuses or [])}
                if p.status
                else {},
                "deleting": p.metadata.deletion_timestamp is not None,
            }
            for p in items
        ]
        bundle.add_json("k8s/pods.json", [sanitize(p) for p in items], redactor)
        if not lab_dir:
            for pod in items:
                for container in pod.spec.containers:
                    for previous in (False, True):
                        try:
                            text = core.read_namespaced_pod_log(
                                pod.metadata.name,
                                namespace,
                                container=container.name,
                                previous=previous,
                                tail_lines=LOG_TAIL_LINES,
                                limit_bytes=LOG_TAIL_BYTES,
                                _request_timeout=API_TIMEOUT,
                            )
                        except client.ApiException:
                            continue
                        suffix = ".previous.log" if previous else ".log"
                        bundle.files[f"k8s/logs/{pod.metadata.name}/{container.name}{suffix}"] = (
                            redactor.text(str(text)).encode()
                        )

    def lab_logs() -> None:
        # every pod of the namespace the lab's nodes ran, gone ones included
        for pod_file in sorted(Path(lab_dir).glob("nodes/*/pods/*/pod")):
            ident = pod_file.read_text().split()[0]
            if not ident.startswith(f"{namespace}/"):
                continue
            name = ident.split("/", 1)[1]
            for log in sorted(pod_file.parent.glob("*.log")):
                current, previous = _split_restarts(log.read_text(errors="replace"))
                base = f"k8s/logs/{name}/{log.stem}"
                bundle.files[f"{base}.log"] = redactor.text(_tail(current)).encode()
                if previous:
                    bundle.files[f"{base}.previous.log"] = redactor.text(_tail(previous)).encode()

    def events() -> None:
        ns_events = core.list_namespaced_event(namespace, _request_timeout=API_TIMEOUT).items
        node_events = [
            e
            for e in core.list_event_for_all_namespaces(_request_timeout=API_TIMEOUT).items
            if e.involved_object and e.involved_object.kind == "Node"
        ]
        facts["events"] = [
            {
                "object": f"{e.involved_object.kind}/{e.involved_object.name}",
                "reason": e.reason,
                "message": e.message,
                "count": e.count,
            }
            for e in [*ns_events, *node_events]
        ]
        bundle.add_json("k8s/events.json", facts["events"], redactor)

    def network_and_storage() -> None:
        slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
            namespace, _request_timeout=API_TIMEOUT
        )
        bundle.add_json("k8s/endpointslices.json", sanitize(slices.items), redactor)
        claims = core.list_namespaced_persistent_volume_claim(
            namespace, _request_timeout=API_TIMEOUT
        ).items
        bundle.add_json("k8s/claims.json", sanitize(claims), redactor)
        volumes = [
            core.read_persistent_volume(c.spec.volume_name, _request_timeout=API_TIMEOUT)
            for c in claims
            if c.spec.volume_name
        ]
        bundle.add_json("k8s/volumes.json", sanitize(volumes), redactor)
        objects["claims"] = claims
        objects["volumes"] = {v.metadata.name: v for v in volumes}
        facts["volumes"] = [
            {
                "name": v.metadata.name,
                "claim": v.spec.claim_ref.name if v.spec.claim_ref else None,
                "affinity": sanitize(v.spec.node_affinity),
            }
            for v in volumes
        ]
        nodes = core.list_node(_request_timeout=API_TIMEOUT).items
        objects["nodes"] = {n.metadata.name for n in nodes}
        facts["nodes"] = [
            {
                "name": n.metadata.name,
                "unschedulable": bool(n.spec.unschedulable),
                "taints": [f"{t.key}:{t.effect}" for t in n.spec.taints or []],
                "ready": next(
                    (c.status for c in n.status.conditions or [] if c.type == "Ready"), None
                ),
            }
            for n in nodes
        ]
        bundle.add_json("k8s/nodes.json", facts["nodes"], redactor)

    bundle.step("pods", pods)
    if lab_dir:
        bundle.step("pod logs (lab)", lab_logs)
    bundle.step("events", events)
    bundle.step("endpoints, claims, volumes, nodes", network_and_storage)
    return facts


def _s3_view(authority: StateAuthority) -> dict[str, Any]:
    view: dict[str, Any] = {}

    def ask(name: str, call: Callable[[Any], Any]) -> None:
        try:
            response = call_with_retries(authority, name, call)
            response.pop("ResponseMetadata", None)
            view[name] = {"ok": True, "answer": response}
        except StateAuthorityError as exc:
            view[name] = {"ok": False, "error": exc.as_dict()}

    ask("list-buckets", lambda c: c.list_buckets())
    ask("head-bucket", lambda c: c.head_bucket(Bucket=authority.bucket))
    if authority.key:
        ask("head-state-key", lambda c: c.head_object(Bucket=authority.bucket, Key=authority.key))
        ask(
            "state-key-versions",
            lambda c: c.list_object_versions(Bucket=authority.bucket, Prefix=authority.key),
        )
    return view


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


def _disk_view(
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
            "read-only debug pod on each volume's node (deploy/opt-in/rca-disk-view.yaml)",
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


def _no_such_bucket(s3: dict[str, Any]) -> bool:
    """Whether the S3 view's HeadBucket answered NoSuchBucket (the incident's answer)."""
    head = s3.get("head-bucket") or {}
    return not head.get("ok") and (head.get("error") or {}).get("class") == "no-such-bucket"


def summary(
    record: dict[str, Any] | None,
    facts: dict[str, Any],
    s3: dict[str, Any],
    disk: dict[str, Any],
    bucket: str,
    notes: list[str],
) -> str:
    lines = ["# RCA", ""]
    if record:
        lines += [
            f"run: {record.get('experiment')} ({record.get('fault')}), verdict "
            f"**{record.get('verdict')}**",
            "",
            *[f"- {r}" for r in record.get("reasons") or []],
            "",
        ]
    lines += ["## S3 view against disk view", ""]
    head_bucket = s3.get("head-bucket", {})
    no_bucket = _no_such_bucket(s3)
    markers = disk.get("bucket_marker_count", 0)
    if no_bucket and markers:
        lines.append(
            f"**Mismatch: NoSuchBucket from S3; bucket markers present on disk** "
            f"({markers} entries naming {bucket!r}, e.g. {', '.join(disk['bucket_markers'][:3])})"
        )
    elif no_bucket and disk.get("collected"):
        lines.append(f"NoSuchBucket from S3, and no marker of {bucket!r} on disk either")
    elif no_bucket:
        lines.append("NoSuchBucket from S3; whether its markers are on disk is unknown")
    else:
        lines.append(
            f"S3 head-bucket: {'ok' if head_bucket.get('ok') else head_bucket.get('error')}"
        )
    if not disk.get("collected"):
        lines.append(f"disk view not collected: {disk.get('why')}")
    else:
        how = {"lab": "the lab's node directories", "debug-pod": "a read-only debug pod"}
        lines.append(
            f"disk view: {', '.join(disk.get('volumes', []))}, read by "
            f"{how.get(disk.get('how', ''), disk.get('how'))}"
        )
    for name, answer in s3.items():
        if not answer.get("ok"):
            lines.append(f"- S3 {name}: {answer['error']['class']}: {answer['error']['code']}")
    lines += ["", "## Pods and scheduling", ""]
    for pod in facts.get("pods", []):
        restarts = ", ".join(f"{k}={v}" for k, v in pod["restarts"].items())
        lines.append(
            f"- {pod['name']} on {pod['node'] or 'no node'}: {pod['phase']}"
            f"{' (deleting)' if pod['deleting'] else ''}; restarts {restarts or 'none'}"
        )
    pending = [p for p in facts.get("pods", []) if p["phase"] == "Pending"]
    for event in facts.get("events", []):
        if event["reason"] == "FailedScheduling":
            # the bundle is taken after the rollbacks, when such a pod may run again: the
            # event is what says it was Pending
            lines.append(
                f"- **{event['object']} was Pending: it could not be scheduled**: "
                f"{event['message']}"
            )
    for volume in facts.get("volumes", []):
        affinity = json.dumps(volume["affinity"]) if volume["affinity"] else "none"
        lines.append(
            f"- volume {volume['name']} (claim {volume['claim']}) node affinity: {affinity}"
        )
    if pending:
        lines.append(
            f"- Pending: {', '.join(p['name'] for p in pending)} (see the volume node affinity above)"
        )
    for node in facts.get("nodes", []):
        if node["unschedulable"] or node["taints"] or node["ready"] != "True":
            lines.append(
                f"- node {node['name']}: Ready={node['ready']}"
                f"{' cordoned' if node['unschedulable'] else ''} {' '.join(node['taints'])}"
            )
    if record and record.get("prober"):
        lines += ["", "## Outage windows", ""]
        for window in (record["prober"].get("outages") or [])[:20]:
            lines.append(
                f"- {window['ms'] / 1000:.2f} s: {window.get('errors')} first seen "
                f"{window.get('first_seen_s')}"
            )
    if notes:
        lines += ["", "## Not collected or cut", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def collect(
    authority: StateAuthority,
    destination: Path,
    record: dict[str, Any] | None = None,
    lab_dir: str = "",
    max_bytes: int = MAX_BYTES,
    deadline_s: float = DEADLINE_S,
    redactor: Redactor | None = None,
    disk_view: str = "",
) -> dict[str, Any]:
    """Collect a bundle into ``destination`` (a ``.tar.gz``); returns its file name and SHA-256.

    ``disk_view``: how the disk view is read (:func:`disk_view_mode`)."""
    scrub = redactor or Redactor(known_secrets())
    bundle = Bundle(deadline_s=deadline_s)
    target = Target.from_env()
    lab = lab_dir or settings.FLYWHEEL_LAB_DIR.get()
    facts: dict[str, Any] = {}
    s3: dict[str, Any] = {}
    disk: dict[str, Any] = {}
    objects: dict[str, Any] = {}

    def k8s() -> None:
        facts.update(_k8s(bundle, target, scrub, lab, objects))

    def s3_part() -> None:
        s3.update(_s3_view(authority))
        bundle.add_json("s3/view.json", s3, scrub)
        if record and record.get("prober"):
            bundle.add_json("s3/outages.json", record["prober"].get("outages"), scrub)

    def disk_part() -> None:
        mode = disk_view_mode(lab, disk_view)
        remaining = bundle.deadline_s - (time.monotonic() - bundle.started)
        disk.update(
            _disk_view(mode, lab, target.namespace, facts, objects, authority.bucket, remaining)
        )
        bundle.add_json("disk/listing.json", disk, scrub)
        bundle.notes += [f"disk view: {note}" for note in disk.get("notes", [])]

    bundle.step("the cluster", k8s)
    bundle.step("the S3 view", s3_part)
    bundle.step("the disk view", disk_part)
    if record is not None:
        bundle.add_json("record.json", record, scrub)
    total = sum(len(v) for v in bundle.files.values())
    if total > max_bytes:
        # cut the logs first, largest first, until it fits
        for name in sorted(
            (n for n in bundle.files if n.startswith("k8s/logs/")),
            key=lambda n: -len(bundle.files[n]),
        ):
            if total <= max_bytes:
                break
            total -= len(bundle.files[name])
            del bundle.files[name]
            bundle.notes.append(f"{name}: cut, the bundle's {max_bytes} byte bound was reached")
    bundle.files["rca.md"] = scrub.text(
        summary(record, facts, s3, disk, authority.bucket, bundle.notes)
    ).encode()
    destination.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in sorted(bundle.files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
            tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    tmp = destination.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, destination)
    return {
        "file": destination.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "mismatch": bool(_no_such_bucket(s3) and disk.get("bucket_marker_count")),
        "notes": bundle.notes,
        "seconds": round(time.monotonic() - bundle.started, 2),
    }
