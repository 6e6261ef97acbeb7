"""The HA readiness gate: recorded evidence plus live facts, one row per requirement.

Green (exit 0) only when every requirement of the design note is proven and
the live posture is HA:

* **repeated runs** (``gate.yaml``, :class:`Policy`): a requirement backed by
  runs needs the last ``runs`` runs of its fault (default 5) against the live
  target, each younger than ``max_age_days``, all passed; any not-survived,
  aborted or error run among them makes the row ``failed`` and names it. A
  survived run whose outage exceeds the policy's ``outage_budget_s`` counts
  as failed too. Each row shows ``k/N survived`` and the Wilson 95 % lower
  bound of the survival rate over every fresh matching run.
* **bound to the live target**: only v2 records whose fingerprint equals the
  live one count (:mod:`harness.record.posture`); a row whose evidence is for
  another posture is ``stale`` and says what changed. v1 records are shown,
  never counted.
* **proof the fault happened**: an experiment record counts only when its
  ``fault_effect`` shows the fault took effect and it was not a dry run.
* **a chain that cannot be cut short unnoticed**: every record must verify
  (hashes, chain, and signatures when a public key is configured), and with
  an evidence store (``FLYWHEEL_EVIDENCE_URL``) the directory must match it.
* **HA posture**: without ``--expect-interim``, one row per unmet posture
  fact (ready endpoints on distinct nodes, data on more than one node, no
  ReadWriteOnce claim shared by a restart, nodes able to host the volumes).

With ``--expect-interim`` it is green only while the live posture is the
known interim one and the guard passes (``mode=interim_expected``); the flag
is refused once HA is proven.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from flywheel_chaos import settings
from flywheel_chaos.s3.authority import StateAuthority
from flywheel_chaos.s3.checks import error_of, run_checks
from harness.errors import ConfigError
from harness.record.evidence import (
    PASSING,
    SCHEMA_V2,
    Verified,
    evidence_dir,
    harness_version,
    verify,
)
from harness.record.posture import Target, differences, fingerprint, posture, read_target
from harness.record.signing import Verifier
from harness.record.store import EvidenceStore, StoreError, compare

__all__ = [
    "DEFAULT_POLICY",
    "GateReport",
    "Policy",
    "Row",
    "evaluate",
    "load_policy",
    "wilson_lower",
]

REPO = Path(__file__).resolve().parents[2]
POLICY_ENV = settings.FLYWHEEL_GATE_POLICY.name

DEFAULT_POLICY: dict[str, Any] = {
    "version": 1,
    "defaults": {"runs": 5, "max_age_days": 30},
    "requirements": {
        "pod-restart": {"fault": "pod-delete", "kind": "experiment", "outage_budget_s": 60},
        "node-maintenance": {"fault": "node-drain", "kind": "experiment", "outage_budget_s": 30},
        "node-unavailability": {
            "fault": "node-unavailable",
            "kind": "experiment",
            "outage_budget_s": 30,
        },
        "no-op-plan": {"fault": "tofu-noop-plan", "kind": "proof", "runs": 1},
        "backup-restore": {"fault": "backup-restore", "kind": "proof", "runs": 1},
        "pre-mutation-guard": {"fault": "guard", "kind": "guard", "runs": 1},
    },
    "posture": {"min_ready_endpoints": 2, "min_endpoint_nodes": 2, "min_volume_nodes": 2},
}
"""The policy when no ``gate.yaml`` is found (the repository's ``gate.yaml`` says the same)."""

TITLES = {
    "s3-checks": "S3 list-buckets, head-bucket, state-key HEAD, bounded write/read/delete",
    "lock-exclusivity": "lock exclusivity as use_lockfile needs it",
    "no-op-plan": "no-op OpenTofu plan against a stack on the authority",
    "pod-restart": "pod restart survival",
    "node-maintenance": "node maintenance (drain of bumble) survival",
    "node-unavailability": "node unavailability survival",
    "backup-restore": "backup, restore, retention and versioning behaviour",
    "pre-mutation-guard": "pre-mutation guard wired (a recorded guard run passed)",
    "ha-endpoints": "ready S3 endpoints on distinct nodes",
    "ha-data": "the data is not on one node only",
    "ha-restart-volume": "no ReadWriteOnce claim shared by a restart",
    "ha-volume-nodes": "nodes able to host the authority's volumes",
}
ORDER = (
    "s3-checks",
    "no-op-plan",
    "lock-exclusivity",
    "pod-restart",
    "node-maintenance",
    "node-unavailability",
    "backup-restore",
    "pre-mutation-guard",
)


@dataclass(frozen=True)
class Requirement:
    name: str
    title: str
    kind: str  # evidence kind it needs; "live" for checks run now, "posture" for live facts
    fault: str = ""
    runs: int = 1
    max_age_days: float = 30.0
    outage_budget_s: float | None = None


@dataclass(frozen=True)
class Policy:
    requirements: tuple[Requirement, ...]
    min_ready_endpoints: int = 2
    min_endpoint_nodes: int = 2
    min_volume_nodes: int = 2
    source: str = "built-in"


def _policy_schema() -> dict[str, Any]:
    import json

    text = resources.files("harness.record").joinpath("gate-policy.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def policy_from(document: Any, source: str, max_age_days: float | None = None) -> Policy:
    try:
        jsonschema.validate(document, _policy_schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "top level"
        raise ConfigError(
            f"gate policy {source} is invalid at {where}: {exc.message}",
            "see gate.yaml in the repository and harness/record/gate-policy.schema.json",
        ) from exc
    defaults = document.get("defaults") or {}
    rows = []
    for name in ORDER:
        spec = document["requirements"].get(name)
        if name in ("s3-checks", "lock-exclusivity"):
            rows.append(
                Requirement(name, TITLES[name], "live", "lock" if name.startswith("lock") else "")
            )
            continue
        if spec is None:
            continue
        rows.append(
            Requirement(
                name,
                TITLES[name],
                spec["kind"],
                spec["fault"],
                int(spec.get("runs", defaults.get("runs", 5))),
                float(
                    max_age_days
                    if max_age_days is not None
                    else spec.get("max_age_days", defaults.get("max_age_days", 30))
                ),
                spec.get("outage_budget_s"),
            )
        )
    live = document.get("posture") or {}
    return Policy(
        tuple(rows),
        int(live.get("min_ready_endpoints", 2)),
        int(live.get("min_endpoint_nodes", 2)),
        int(live.get("min_volume_nodes", 2)),
        source,
    )


def load_policy(path: str | Path | None = None, max_age_days: float | None = None) -> Policy:
    """The gate policy: ``path``, ``FLYWHEEL_GATE_POLICY``, ./gate.yaml, the repository's, built-in."""
    explicit = path or settings.FLYWHEEL_GATE_POLICY.get()
    candidates = [Path(explicit)] if explicit else [Path("gate.yaml"), REPO / "gate.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            try:
                document = yaml.safe_load(candidate.read_text())
            except yaml.YAMLError as exc:
                raise ConfigError(
                    f"gate policy {candidate} is not valid YAML: {exc}", "see gate.yaml"
                ) from exc
            return policy_from(document, str(candidate.resolve()), max_age_days)
        if explicit:
            raise ConfigError(f"gate policy {candidate} does not exist", "see gate.yaml")
    return policy_from(DEFAULT_POLICY, "built-in", max_age_days)


def wilson_lower(successes: int, total: int, z: float = 1.96) -> float | None:
    """Wilson score lower bound of a rate (95 % by default); None without runs."""
    if total == 0:
        return None
    p = successes / total
    centre = p + z * z / (2 * total)
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, (centre - margin) / (1 + z * z / total))


@dataclass
class Row:
    requirement: Requirement
    status: str  # proven | unproven | failed | stale
    evidence: str | None = None
    age_days: float | None = None
    detail: str = ""
    runs: list[str] = field(default_factory=list)
    survival_lower_bound: float | None = None
    fresh_runs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requirement": self.requirement.name,
            "title": self.requirement.title,
            "status": self.status,
            "evidence": self.evidence,
            "age_days": None if self.age_days is None else round(self.age_days, 2),
            "detail": self.detail,
            "runs": self.runs,
            "fresh_matching_runs": self.fresh_runs,
            "survival_wilson95_lower": None
            if self.survival_lower_bound is None
            else round(self.survival_lower_bound, 3),
        }


@dataclass
class GateReport:
    rows: list[Row] = field(default_factory=list)
    tampered: list[Verified] = field(default_factory=list)
    store_problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    posture: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    guard_ok: bool = False
    policy: str = ""

    @property
    def evidence_ok(self) -> bool:
        return not self.tampered and not self.store_problems

    @property
    def proven(self) -> bool:
        return self.evidence_ok and all(r.status == "proven" for r in self.rows)

    @property
    def requirements_proven(self) -> bool:
        return self.evidence_ok and all(
            r.status == "proven" for r in self.rows if r.requirement.kind != "posture"
        )

    @property
    def interim_posture(self) -> bool:
        return bool(self.posture.get("interim_posture"))


def _age_days(record: dict[str, Any], now: dt.datetime) -> float:
    recorded = dt.datetime.fromisoformat(str(record.get("recorded_at")))
    return (now - recorded).total_seconds() / 86400


def _passed(record: dict[str, Any], requirement: Requirement) -> tuple[bool, str]:
    verdict = str(record.get("verdict"))
    if verdict not in PASSING:
        return False, f"{verdict}: {'; '.join(record.get('reasons') or [])}"
    budget = requirement.outage_budget_s
    longest = (record.get("prober") or {}).get("longest_outage_ms")
    if budget is not None and isinstance(longest, int | float) and longest > budget * 1000:
        return False, f"outage {longest / 1000:.1f} s exceeds the policy budget {budget:g} s"
    return True, verdict


def _counts(record: dict[str, Any], requirement: Requirement) -> str | None:
    """Why a record cannot count for ``requirement`` at all (None: it may)."""
    if record.get("schema") != SCHEMA_V2:
        return "schema v1"
    if record.get("dry_run"):
        return "dry run"
    if requirement.kind == "experiment" and not (record.get("fault_effect") or {}).get(
        "took_effect"
    ):
        return "no proof the fault took effect"
    return None


def _evidence_row(
    requirement: Requirement,
    records: list[Verified],
    live: dict[str, Any],
    now: dt.datetime,
) -> Row:
    mine = [
        v
        for v in records
        if v.record is not None
        and v.record.get("kind") == requirement.kind
        and v.record.get("fault") == requirement.fault
    ]
    fresh = [v for v in mine if _age_days(v.record or {}, now) <= requirement.max_age_days]
    countable = [v for v in fresh if _counts(v.record or {}, requirement) is None]
    matching = [v for v in countable if not differences((v.record or {}).get("fingerprint"), live)]
    # by identity: `in` on a list compares whole records, which made the gate quadratic
    matched = {id(v) for v in matching}
    others = [v for v in countable if id(v) not in matched]
    outcomes = [(v, *_passed(v.record or {}, requirement)) for v in matching]
    lower = wilson_lower(sum(1 for _, ok, _ in outcomes if ok), len(outcomes))
    window = outcomes[-requirement.runs :]
    ok_count = sum(1 for _, ok, _ in window if ok)
    noun = "passed" if requirement.kind in ("proof", "guard") else "survived"
    tally = f"{ok_count}/{requirement.runs} {noun}"
    latest = window[-1][0] if window else None
    age = _age_days(latest.record or {}, now) if latest else None
    evidence = latest.path.name if latest else None
    row = Row(
        requirement,
        "unproven",
        evidence,
        age,
        runs=[v.path.name for v, _, _ in window],
        survival_lower_bound=lower,
        fresh_runs=len(outcomes),
    )
    failures = [
        f"{(v.record or {}).get('verdict')} at {str((v.record or {}).get('recorded_at'))[:19]}: {why}"
        for v, ok, why in window
        if not ok
    ]
    if failures:
        row.status = "failed"
        row.detail = f"{tally} ({'; '.join(failures)})"
    elif len(window) >= requirement.runs:
        row.status = "proven"
        row.detail = tally
    elif not mine:
        row.detail = "no evidence recorded"
    elif not fresh:
        row.detail = f"no run younger than {requirement.max_age_days:g} days"
    elif others:
        changed = "; ".join(differences((others[-1].record or {}).get("fingerprint"), live))
        row.status = "stale"
        row.detail = (
            f"{tally}: {changed} ({len(others)} fresh run(s) recorded against another "
            f"posture); {len(outcomes)} run(s) match the live target"
        )
    else:
        row.detail = f"{tally}: {requirement.runs - len(window)} more run(s) needed"
        counted = {id(v) for v in countable}
        excluded = [v for v in fresh if id(v) not in counted]
        if excluded:
            reasons = sorted({_counts(v.record or {}, requirement) or "" for v in excluded})
            row.detail += f"; {len(excluded)} not counted ({', '.join(reasons)})"
    if lower is not None:
        row.detail += f"; survival rate >= {lower:.0%} (Wilson 95 %, {len(outcomes)} fresh run(s))"
    return row


def _posture_rows(policy: Policy, live: dict[str, Any]) -> list[Row]:
    def req(name: str) -> Requirement:
        return Requirement(name, TITLES[name], "posture")

    if "error" in live:
        return [Row(req("ha-endpoints"), "unproven", "live facts", 0.0, live["error"])]
    nodes = live["endpoint_nodes"]
    rows = [
        Row(
            req("ha-endpoints"),
            "proven"
            if live["ready_endpoints"] >= policy.min_ready_endpoints
            and len(nodes) >= policy.min_endpoint_nodes
            else "failed",
            "live facts",
            0.0,
            f"{live['ready_endpoints']} ready endpoint(s) on {len(nodes)} node(s) ({', '.join(nodes) or 'none'}); "
            f"needs {policy.min_ready_endpoints} on {policy.min_endpoint_nodes}",
        ),
        Row(
            req("ha-data"),
            "failed" if live["data_only_on"] or not live["claims"] else "proven",
            "live facts",
            0.0,
            f"every volume is on {live['data_only_on'][0]}: losing it leaves no replica"
            if live["data_only_on"]
            else "no data volume found: where the data lives is unknown"
            if not live["claims"]
            else f"{len(live['claims'])} claim(s) across nodes",
        ),
        Row(
            req("ha-restart-volume"),
            "failed" if live["restart_shares_volume"] else "proven",
            "live facts",
            0.0,
            f"a Deployment restart runs two servers on {', '.join(live['restart_shares_volume'])} "
            "(ReadWriteOnce is per node; ReadWriteOncePod or a StatefulSet waits)"
            if live["restart_shares_volume"]
            else "no ReadWriteOnce claim is shared by a Deployment restart",
        ),
        Row(
            req("ha-volume-nodes"),
            "proven" if len(live["volume_nodes"]) >= policy.min_volume_nodes else "failed",
            "live facts",
            0.0,
            f"{len(live['volume_nodes'])} node(s) can host its volumes "
            f"({', '.join(live['volume_nodes']) or 'none'}); needs {policy.min_volume_nodes}",
        ),
    ]
    return rows


def evaluate(
    authority: StateAuthority,
    max_age_days: float | None = None,
    directory: Path | None = None,
    namespace: str = "",
    deployment: str = "",
    policy: Policy | None = None,
    verifier: Verifier | None = None,
    store: EvidenceStore | None = None,
) -> GateReport:
    rules = policy or load_policy(max_age_days=max_age_days)
    report = GateReport(policy=rules.source)
    folder = directory or evidence_dir()
    verified = verify(folder, verifier)
    report.tampered = [v for v in verified if not v.ok]
    if store is not None:
        try:
            report.store_problems = compare(folder, store, verifier)
        except StoreError as exc:
            report.store_problems = [f"cannot compare with the evidence store: {exc}"]
    else:
        report.notes.append(
            "no evidence store (FLYWHEEL_EVIDENCE_URL): deleting the newest records cannot be detected"
        )
    if verifier is None:
        report.notes.append("no public key (--public-key): signatures are not checked")
    v1 = sum(1 for v in verified if v.ok and v.schema != SCHEMA_V2)
    if v1:
        report.notes.append(f"{v1} v1 record(s) shown but never counted")
    checks = {c["name"]: c for c in run_checks(authority)}
    report.guard_ok = all(c["ok"] for c in checks.values())
    report.facts = read_target(Target.from_env(namespace, deployment))
    report.posture = posture(report.facts)
    report.fingerprint = fingerprint(
        report.facts, authority.endpoint, authority.bucket, authority.key, harness_version()
    )
    now = dt.datetime.now(dt.UTC)
    good = [v for v in verified if v.ok and v.record is not None]
    for requirement in rules.requirements:
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
                    ", ".join(f"{n}: {error_of(checks[n])['class']}" for n in failed)
                    or "passed now",
                )
            )
            continue
        report.rows.append(_evidence_row(requirement, good, report.fingerprint, now))
    report.rows.extend(_posture_rows(rules, report.posture))
    return report
