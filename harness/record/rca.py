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

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flywheel_chaos import settings
from flywheel_chaos.s3.authority import StateAuthority
from flywheel_chaos.s3.client import call_with_retries
from flywheel_chaos.s3.errors import StateAuthorityError
from harness.record import rca_disk
from harness.record.posture import Target
from harness.record.rca_bundle import DEADLINE_S, MAX_BYTES, Bundle
from harness.record.rca_cluster import ClusterStep
from harness.record.rca_disk import disk_view_mode
from harness.record.redact import Redactor, known_secrets

__all__ = ["collect", "disk_view_mode", "summary"]


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


def _no_such_bucket(s3: dict[str, Any]) -> bool:
    """Whether the S3 view's HeadBucket answered NoSuchBucket (the incident's answer)."""
    head = s3.get("head-bucket") or {}
    return not head.get("ok") and (head.get("error") or {}).get("class") == "no-such-bucket"


def _s3_against_disk(s3: dict[str, Any], disk: dict[str, Any], bucket: str) -> list[str]:
    lines = ["## S3 view against disk view", ""]
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
        answer = "ok" if head_bucket.get("ok") else head_bucket.get("error")
        lines.append(f"S3 head-bucket: {answer}")
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
    return lines


def _scheduling(facts: dict[str, Any]) -> list[str]:
    lines = ["## Pods and scheduling", ""]
    for pod in facts.get("pods", []):
        restarts = ", ".join(f"{k}={v}" for k, v in pod["restarts"].items())
        lines.append(
            f"- {pod['name']} on {pod['node'] or 'no node'}: {pod['phase']}"
            f"{' (deleting)' if pod['deleting'] else ''}; restarts {restarts or 'none'}"
        )
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
    pending = [p["name"] for p in facts.get("pods", []) if p["phase"] == "Pending"]
    if pending:
        lines.append(f"- Pending: {', '.join(pending)} (see the volume node affinity above)")
    for node in facts.get("nodes", []):
        if node["unschedulable"] or node["taints"] or node["ready"] != "True":
            lines.append(
                f"- node {node['name']}: Ready={node['ready']}"
                f"{' cordoned' if node['unschedulable'] else ''} {' '.join(node['taints'])}"
            )
    return lines


def summary(
    record: dict[str, Any] | None,
    facts: dict[str, Any],
    s3: dict[str, Any],
    disk: dict[str, Any],
    bucket: str,
    notes: list[str],
) -> str:
    """``rca.md``: the run, S3 against disk, pods and scheduling, the outage windows, notes."""
    lines = ["# RCA", ""]
    if record:
        lines += [
            f"run: {record.get('experiment')} ({record.get('fault')}), verdict "
            f"**{record.get('verdict')}**",
            "",
            *[f"- {r}" for r in record.get("reasons") or []],
            "",
        ]
    lines += [*_s3_against_disk(s3, disk, bucket), "", *_scheduling(facts)]
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
    cluster = ClusterStep(bundle, target, scrub, lab)

    def k8s() -> None:
        facts.update(cluster.run())

    def s3_part() -> None:
        s3.update(_s3_view(authority))
        bundle.add_json("s3/view.json", s3, scrub)
        if record and record.get("prober"):
            bundle.add_json("s3/outages.json", record["prober"].get("outages"), scrub)

    def disk_part() -> None:
        mode = disk_view_mode(lab, disk_view)
        remaining = bundle.deadline_s - (time.monotonic() - bundle.started)
        disk.update(
            rca_disk.disk_view(
                mode, lab, target.namespace, facts, cluster.objects, authority.bucket, remaining
            )
        )
        bundle.add_json("disk/listing.json", disk, scrub)
        bundle.notes += [f"disk view: {note}" for note in disk.get("notes", [])]

    bundle.step("the cluster", k8s)
    bundle.step("the S3 view", s3_part)
    bundle.step("the disk view", disk_part)
    if record is not None:
        bundle.add_json("record.json", record, scrub)
    bundle.fit(max_bytes)
    bundle.files["rca.md"] = scrub.text(
        summary(record, facts, s3, disk, authority.bucket, bundle.notes)
    ).encode()
    data = bundle.write(destination)
    return {
        "file": destination.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "mismatch": bool(_no_such_bucket(s3) and disk.get("bucket_marker_count")),
        "notes": bundle.notes,
        "seconds": round(time.monotonic() - bundle.started, 2),
    }
