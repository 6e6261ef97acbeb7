"""The HA readiness gate: recorded evidence plus live facts, one row per requirement.

Green (exit 0) only when every requirement of the design note is proven by
fresh (``--max-age``), chain-verified, non-dry-run evidence. With
``--expect-interim`` it is green only while the live posture is the known
interim one (one replica, a ReadWriteOnce volume pinned to one node) and the
guard passes; it prints ``mode=interim_expected``. The flag is refused once
HA is proven (it would hide that the interim posture is gone).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from actions.cluster import API_TIMEOUT, api_client
from harness.record.evidence import Verified, evidence_dir, verify
from probes.s3client import StateAuthority
from probes.state_authority import run_checks


@dataclass(frozen=True)
class Requirement:
    name: str
    title: str
    kind: str  # evidence kind it needs
    fault: str  # evidence fault it needs ("" = live guard)


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        "s3-checks",
        "S3 list-buckets, head-bucket, state-key HEAD, bounded write/read/delete",
        "live",
        "",
    ),
    Requirement(
        "no-op-plan",
        "no-op OpenTofu plan against a stack on the authority",
        "proof",
        "tofu-noop-plan",
    ),
    Requirement("lock-exclusivity", "lock exclusivity as use_lockfile needs it", "live", "lock"),
    Requirement("pod-restart", "pod restart survival", "experiment", "pod-delete"),
    Requirement(
        "node-maintenance",
        "node maintenance (drain of bumble) survival",
        "experiment",
        "node-drain",
    ),
    Requirement(
        "node-unavailability", "node unavailability survival", "experiment", "node-unavailable"
    ),
    Requirement(
        "backup-restore",
        "backup, restore, retention and versioning behaviour",
        "proof",
        "backup-restore",
    ),
    Requirement(
        "pre-mutation-guard",
        "pre-mutation guard wired (a recorded guard run passed)",
        "guard",
        "guard",
    ),
)

PASSING = {"survived", "passed"}


@dataclass
class Row:
    requirement: Requirement
    status: str  # proven | unproven | failed | stale
    evidence: str | None = None
    age_days: float | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "requirement": self.requirement.name,
            "title": self.requirement.title,
            "status": self.status,
            "evidence": self.evidence,
            "age_days": None if self.age_days is None else round(self.age_days, 2),
            "detail": self.detail,
        }


@dataclass
class GateReport:
    rows: list[Row] = field(default_factory=list)
    tampered: list[Verified] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    guard_ok: bool = False

    @property
    def proven(self) -> bool:
        return not self.tampered and all(r.status == "proven" for r in self.rows)

    @property
    def interim_posture(self) -> bool:
        return bool(self.facts.get("interim_posture"))


def _age_days(record: dict[str, Any], now: dt.datetime) -> float:
    recorded = dt.datetime.fromisoformat(str(record.get("recorded_at")))
    return (now - recorded).total_seconds() / 86400


def live_facts(namespace: str, deployment: str) -> dict[str, Any]:
    """What the cluster says about the state authority right now."""
    api = api_client()
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    facts: dict[str, Any] = {"namespace": namespace, "deployment": deployment}
    try:
        dep = apps.read_namespaced_deployment(deployment, namespace, _request_timeout=API_TIMEOUT)
    except ApiException as exc:
        facts["error"] = f"deployment {namespace}/{deployment}: {exc.status} {exc.reason}"
        return facts
    facts["replicas"] = dep.spec.replicas
    facts["ready_replicas"] = dep.status.ready_replicas or 0
    images = [c.image for c in dep.spec.template.spec.containers]
    facts["images"] = images
    facts["image_pinned_by_digest"] = all("@sha256:" in image for image in images)
    slices = (
        client.DiscoveryV1Api(api)
        .list_namespaced_endpoint_slice(
            namespace,
            label_selector=f"kubernetes.io/service-name={deployment}",
            _request_timeout=API_TIMEOUT,
        )
        .items
    )
    facts["ready_endpoints"] = sum(
        1
        for s in slices
        for e in s.endpoints or []
        if e.conditions is None or e.conditions.ready is not False
    )
    volumes = []
    for volume in dep.spec.template.spec.volumes or []:
        if volume.persistent_volume_claim is None:
            continue
        claim = core.read_namespaced_persistent_volume_claim(
            volume.persistent_volume_claim.claim_name, namespace, _request_timeout=API_TIMEOUT
        )
        entry: dict[str, Any] = {
            "claim": claim.metadata.name,
            "access_modes": claim.spec.access_modes,
            "storage_class": claim.spec.storage_class_name,
            "volume": claim.spec.volume_name,
            "pinned_nodes": [],
        }
        if claim.spec.volume_name:
            pv = core.read_persistent_volume(claim.spec.volume_name, _request_timeout=API_TIMEOUT)
            required = pv.spec.node_affinity.required if pv.spec.node_affinity else None
            for term in (required.node_selector_terms if required else None) or []:
                for expression in term.match_expressions or []:
                    if expression.operator == "In":
                        entry["pinned_nodes"] += list(expression.values or [])
        volumes.append(entry)
    facts["volumes"] = volumes
    # ReadWriteOnce is per node: a Deployment's replacement pod starts on the same
    # volume while the pod it replaces is still terminating (ReadWriteOncePod, or a
    # StatefulSet, would wait); pod-delete measures it as volume_overlap
    facts["restart_shares_volume"] = [
        v["claim"] for v in volumes if set(v["access_modes"] or []) == {"ReadWriteOnce"}
    ]
    try:
        zfs = client.CustomObjectsApi(api).list_cluster_custom_object(
            "zfs.openebs.io", "v1", "zfsnodes", _request_timeout=API_TIMEOUT
        )
        facts["openebs_zfs_nodes"] = len(zfs.get("items", []))
    except ApiException:
        facts["openebs_zfs_nodes"] = None
    facts["interim_posture"] = facts["replicas"] == 1 and any(
        "ReadWriteOnce" in (v["access_modes"] or []) and len(set(v["pinned_nodes"])) == 1
        for v in volumes
    )
    return facts


def evaluate(
    authority: StateAuthority,
    max_age_days: float = 30.0,
    directory: Path | None = None,
    namespace: str = "",
    deployment: str = "",
) -> GateReport:
    report = GateReport()
    namespace = namespace or os.environ.get("FLYWHEEL_STATE_NAMESPACE", "nix-cache")
    deployment = deployment or os.environ.get("FLYWHEEL_STATE_DEPLOYMENT", "attic-rustfs-openebs")
    verified = verify(directory or evidence_dir())
    report.tampered = [v for v in verified if not v.ok]
    checks = {c["name"]: c for c in run_checks(authority)}
    report.guard_ok = all(c["ok"] for c in checks.values())
    report.facts = live_facts(namespace, deployment)
    now = dt.datetime.now(dt.UTC)
    good = [v for v in verified if v.ok and v.record is not None]
    for requirement in REQUIREMENTS:
        if requirement.kind == "live":
            names = (
                ["lock-exclusive"]
                if requirement.fault == "lock"
                else [n for n in checks if n != "lock-exclusive"]
            )
            failed = [n for n in names if not checks[n]["ok"]]
            report.rows.append(
                Row(
                    requirement,
                    "failed" if failed else "proven",
                    "live check",
                    0.0,
                    ", ".join(f"{n}: {checks[n]['error']['class']}" for n in failed)
                    or "passed now",
                )
            )
            continue
        candidates = [
            v
            for v in good
            if v.record is not None
            and v.record.get("kind") == requirement.kind
            and v.record.get("fault") == requirement.fault
            and not v.record.get("dry_run")
        ]
        if not candidates:
            report.rows.append(Row(requirement, "unproven", None, None, "no evidence recorded"))
            continue
        latest = candidates[-1]
        assert latest.record is not None
        age = _age_days(latest.record, now)
        verdict = latest.record.get("verdict")
        if age > max_age_days:
            report.rows.append(
                Row(
                    requirement, "stale", latest.path.name, age, f"older than {max_age_days:g} days"
                )
            )
        elif verdict in PASSING:
            report.rows.append(Row(requirement, "proven", latest.path.name, age, str(verdict)))
        else:
            reasons = "; ".join(latest.record.get("reasons") or [])
            report.rows.append(
                Row(requirement, "unproven", latest.path.name, age, f"{verdict}: {reasons}")
            )
    return report
