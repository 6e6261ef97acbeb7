"""The HA readiness gate: recorded evidence plus live facts, one row per requirement.

Green (exit 0) only when every requirement of the design note is proven and the live
posture is HA, from a policy no weaker than the floors and evidence that can be trusted:

* **the policy** (:mod:`harness.record.policy`): the shipped ``gate.yaml`` unless
  ``--policy``/``FLYWHEEL_GATE_POLICY``; a weaker or incomplete one is ``weaker_policy``;
* **repeated runs, none dropped** (:mod:`harness.record.counting`): a row is proven only
  when the last ``runs`` counted runs of its fault passed **and** the Wilson 95 % lower bound
  over every fresh counted run reaches the policy's ``min_survival_lower_bound``; every
  fresh run whose fault began counts, whatever its verdict;
* **bound to the live target**: a record counts only when its fingerprint equals the live
  one and its verdict rules are today's; others are ``stale`` (shown, never counted);
* **the fault is what was done, to the authority**: re-derived by the gate from the
  record's own fault actions and its fingerprinted workloads;
* **trust**: every record verifies (hashes, chain, signatures); without a public key, or
  with an unsigned counted record, the gate says ``mode=unsigned`` and is never green; a
  chain that mixes signed and unsigned records is named; with an evidence store
  (``FLYWHEEL_EVIDENCE_URL``) the directory must match it and its history may not go back;
* **HA posture**: ready endpoints on distinct nodes, data on more than one node (a claim
  missing, unbound or unpinned is unknown, never "not on one node"), no ReadWriteOnce claim
  shared by a restart, nodes able to host the volumes.

With ``--expect-interim`` it is green only while the live posture is the known interim one
and the guard passes (``mode=interim_expected``); the flag is refused once HA is proven.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel_chaos.s3.authority import StateAuthority
from flywheel_chaos.s3.checks import error_of, run_checks
from harness.errors import EXIT_FAILED, EXIT_OK
from harness.record.counting import Judged, judge
from harness.record.evidence import SCHEMA_V2, Verified, evidence_dir, verify
from harness.record.junit import Case
from harness.record.policy import TITLES, Policy, Requirement, load_policy
from harness.record.posture import Target, fingerprint, posture, read_target
from harness.record.signing import Verifier
from harness.record.store import EvidenceStore, StoreError, compare

__all__ = [
    "GateReport",
    "Policy",
    "Row",
    "evaluate",
    "gate_cases",
    "gate_document",
    "gate_mode",
    "load_policy",
    "wilson_lower",
]


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
    rules: Policy | None = None
    unsigned: list[str] = field(default_factory=list)
    """Why the evidence is not signed well enough to be green (empty: it is)."""

    @property
    def weaker_policy(self) -> list[str]:
        return list(self.rules.weaker) if self.rules is not None else []

    @property
    def evidence_ok(self) -> bool:
        return not self.tampered and not self.store_problems

    @property
    def rows_proven(self) -> bool:
        return all(r.status == "proven" for r in self.rows)

    @property
    def proven(self) -> bool:
        """Green: every row proven, trusted evidence, a policy at the floors or stricter."""
        return (
            self.evidence_ok and not self.unsigned and not self.weaker_policy and self.rows_proven
        )

    @property
    def requirements_proven(self) -> bool:
        return self.evidence_ok and all(
            r.status == "proven" for r in self.rows if r.requirement.kind != "posture"
        )

    @property
    def interim_posture(self) -> bool:
        return bool(self.posture.get("interim_posture"))


def _age_days(record: dict[str, Any], now: dt.datetime) -> float | None:
    try:
        recorded = dt.datetime.fromisoformat(str(record.get("recorded_at")))
    except ValueError:
        return None
    if recorded.tzinfo is None:
        return None
    return (now - recorded).total_seconds() / 86400


def _detail_for_no_proof(
    requirement: Requirement, mine: list[Judged], counted: list[Judged], window: list[Judged]
) -> tuple[str, str]:
    stale = [j for j in mine if j.status == "stale"]
    excluded = [j for j in mine if j.status == "excluded"]
    if not mine:
        return "unproven", f"no run younger than {requirement.max_age_days:g} days"

    if stale and not counted:
        return "stale", (
            f"{stale[-1].why} ({len(stale)} fresh run(s) recorded against another posture "
            "or other verdict rules); 0 run(s) match the live target"
        )
    detail = f"{requirement.runs - len(window)} more run(s) needed"
    if excluded:
        reasons = sorted({j.why for j in excluded})
        detail += f"; {len(excluded)} not counted ({', '.join(reasons)})"
    if stale:
        detail += f"; {len(stale)} stale ({stale[-1].why})"
    return "unproven", detail


def _evidence_row(
    requirement: Requirement, records: list[Verified], live: dict[str, Any], now: dt.datetime
) -> Row:
    ours = [
        v
        for v in records
        if (v.record or {}).get("kind") == requirement.kind
        and (v.record or {}).get("fault") == requirement.fault
    ]
    judged = [j for j in (judge(v, requirement, live, now) for v in ours) if j is not None]
    counted = [j for j in judged if j.status in ("pass", "fail")]
    blocking = [j for j in judged if j.status == "blocking"]
    passes = sum(1 for j in counted if j.status == "pass")
    lower = wilson_lower(passes, len(counted))
    window = counted[-requirement.runs :]
    noun = "passed" if requirement.kind in ("proof", "guard") else "survived"
    tally = f"{sum(1 for j in window if j.status == 'pass')}/{requirement.runs} {noun}"
    latest = window[-1] if window else None
    row = Row(
        requirement,
        "unproven",
        latest.name if latest else None,
        _age_days(latest.record, now) if latest else None,
        runs=[j.name for j in window],
        survival_lower_bound=lower,
        fresh_runs=len(counted),
    )
    failures = [
        f"{j.record.get('verdict')} at {str(j.record.get('recorded_at'))[:19]}: {j.why}"
        for j in window
        if j.status == "fail"
    ]
    bound = requirement.min_survival_lower_bound
    if blocking:
        row.status = "failed"
        row.detail = f"{tally}; blocked by {'; '.join(f'{j.name}: {j.why}' for j in blocking)}"
    elif failures:
        row.status = "failed"
        row.detail = f"{tally} ({'; '.join(failures)})"
    elif (
        len(window) >= requirement.runs
        and requirement.kind == "experiment"
        and (lower is None or lower < bound)
    ):
        row.status = "failed"
        row.detail = (
            f"{tally}, but over all {len(counted)} fresh run(s) {passes} survived: the survival "
            f"rate's Wilson 95 % lower bound {lower or 0:.0%} is below the policy's {bound:.0%}"
        )
    elif len(window) >= requirement.runs:
        row.status = "proven"
        row.detail = tally
    elif not ours:
        row.detail = "no evidence recorded"
    else:
        row.status, detail = _detail_for_no_proof(requirement, judged, counted, window)
        row.detail = f"{tally}: {detail}" if judged else detail
    if lower is not None:
        row.detail += f"; survival rate >= {lower:.0%} (Wilson 95 %, {len(counted)} fresh run(s))"
    return row


def _data_row(live: dict[str, Any]) -> Row:
    row = Row(Requirement("ha-data", TITLES["ha-data"], "posture"), "proven", "live facts", 0.0)
    unknown = live.get("unknown_claims") or []
    if live["data_only_on"]:
        row.status = "failed"
        row.detail = (
            f"every known volume is on {live['data_only_on'][0]}: losing it leaves no replica"
        )
    elif not live["claims"]:
        row.status, row.detail = "unproven", "no data volume found: where the data lives is unknown"
    elif unknown:
        row.status = "unproven"
        row.detail = f"where some data lives is unknown: {'; '.join(unknown)}"
    else:
        row.detail = f"{len(live['claims'])} claim(s) across nodes"
    return row


def _posture_rows(policy: Policy, live: dict[str, Any]) -> list[Row]:
    def req(name: str) -> Requirement:
        return Requirement(name, TITLES[name], "posture")

    if "error" in live:
        return [Row(req("ha-endpoints"), "unproven", "live facts", 0.0, live["error"])]
    nodes, volume_nodes = live["endpoint_nodes"], live["volume_nodes"]
    unknown = live.get("unknown_claims") or []
    endpoints_ok = (
        live["ready_endpoints"] >= policy.min_ready_endpoints
        and len(nodes) >= policy.min_endpoint_nodes
    )
    volume_status = "proven" if len(volume_nodes) >= policy.min_volume_nodes else "failed"
    volume_detail = (
        f"{len(volume_nodes)} node(s) can host its volumes "
        f"({', '.join(volume_nodes) or 'none'}); needs {policy.min_volume_nodes}"
    )
    if unknown and volume_status == "proven":
        volume_status, volume_detail = "unproven", f"{volume_detail}; unknown: {'; '.join(unknown)}"
    shared = live["restart_shares_volume"]
    return [
        Row(
            req("ha-endpoints"),
            "proven" if endpoints_ok else "failed",
            "live facts",
            0.0,
            f"{live['ready_endpoints']} ready endpoint(s) on {len(nodes)} node(s) "
            f"({', '.join(nodes) or 'none'}); needs {policy.min_ready_endpoints} on "
            f"{policy.min_endpoint_nodes}",
        ),
        _data_row(live),
        Row(
            req("ha-restart-volume"),
            "failed" if shared else "proven",
            "live facts",
            0.0,
            f"a Deployment restart runs two servers on {', '.join(shared)} "
            "(ReadWriteOnce is per node; ReadWriteOncePod or a StatefulSet waits)"
            if shared
            else "no ReadWriteOnce claim is shared by a Deployment restart",
        ),
        Row(req("ha-volume-nodes"), volume_status, "live facts", 0.0, volume_detail),
    ]


def _trust(verified: list[Verified], verifier: Verifier | None) -> tuple[list[str], list[str]]:
    """(why the evidence is not signed well enough for green, chain problems to name)."""
    unsigned: list[str] = []
    if verifier is None:
        unsigned.append(
            "no public key (--public-key, FLYWHEEL_EVIDENCE_PUBLIC_KEY): signatures are not "
            "checked, so any valid-looking chain would count"
        )
    v2 = [v for v in verified if v.record is not None and v.schema == SCHEMA_V2]
    signed = [v for v in v2 if (v.record or {}).get("signature")]
    bare = [v.path.name for v in v2 if not (v.record or {}).get("signature")]
    problems = []
    if signed and bare:
        problems.append(
            f"the chain mixes signed and unsigned records: {len(bare)} unsigned "
            f"({', '.join(bare[:5])}{', ...' if len(bare) > 5 else ''})"
        )
    elif bare:
        unsigned.append(f"{len(bare)} record(s) are unsigned")
    return unsigned, problems


def _live_row(requirement: Requirement, checks: dict[str, Any]) -> Row:
    names = (
        ["lock-exclusive"]
        if requirement.fault == "lock"
        else [n for n in checks if n != "lock-exclusive"]
    )
    failed = [n for n in names if not checks[n]["ok"]]
    detail = ", ".join(f"{n}: {error_of(checks[n])['class']}" for n in failed) or "passed now"
    return Row(requirement, "failed" if failed else "proven", "live check", 0.0, detail)


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
    report = GateReport(policy=rules.source, rules=rules)
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
    report.unsigned, chain_problems = _trust(verified, verifier)
    report.store_problems += chain_problems
    v1 = sum(1 for v in verified if v.ok and v.schema != SCHEMA_V2)
    if v1:
        report.notes.append(f"{v1} v1 record(s) shown but never counted")
    checks = {c["name"]: c for c in run_checks(authority)}
    report.guard_ok = all(c["ok"] for c in checks.values())
    report.facts = read_target(Target.from_env(namespace, deployment))
    report.posture = posture(report.facts)
    report.fingerprint = fingerprint(
        report.facts, authority.endpoint, authority.bucket, authority.key
    )
    now = dt.datetime.now(dt.UTC)
    good = [v for v in verified if v.ok and v.record is not None]
    for requirement in rules.requirements:
        if requirement.kind == "live":
            report.rows.append(_live_row(requirement, checks))
        else:
            report.rows.append(_evidence_row(requirement, good, report.fingerprint, now))
    report.rows.extend(_posture_rows(rules, report.posture))
    return report


def gate_mode(report: GateReport, expect_interim: bool) -> tuple[str, int, str]:
    """The gate's mode, exit code and why: the one place that decides them.

    A weaker policy is never green, in either mode; HA is never green without trust."""
    if report.weaker_policy:
        return (
            "weaker_policy",
            EXIT_FAILED,
            "the policy is weaker than the floors: " + "; ".join(report.weaker_policy),
        )
    if not expect_interim:
        if not report.evidence_ok:
            return "evidence_tampered", EXIT_FAILED, "recorded evidence fails verification"
        if report.unsigned:
            return "unsigned", EXIT_FAILED, "; ".join(report.unsigned)
        if report.proven:
            return "ha_ready", EXIT_OK, "every requirement is proven and the live posture is HA"
        return "not_ha_ready", EXIT_FAILED, "unproven requirements or posture facts remain"
    if report.rows_proven and report.evidence_ok and not report.unsigned:
        return "stale_interim_flag", EXIT_FAILED, "HA is proven: --expect-interim is stale, drop it"
    if not report.evidence_ok:
        return "evidence_tampered", EXIT_FAILED, "recorded evidence fails verification"
    if not report.guard_ok:
        return (
            "interim_degraded",
            EXIT_FAILED,
            "the guard fails: worse than the known interim posture",
        )
    if not report.interim_posture:
        return "posture_unknown", EXIT_FAILED, "the live posture is not the known interim one"
    return "interim_expected", EXIT_OK, "the known interim posture; HA not yet proven"


def gate_document(report: GateReport, mode: str, ok: bool, why: str) -> dict[str, Any]:
    """The gate's verdict as ``gate --json`` prints it and a game day records it."""
    return {
        "mode": mode,
        "ok": ok,
        "reason": why,
        "policy": report.policy,
        "policy_effective": report.rules.effective() if report.rules else None,
        "weaker_policy": report.weaker_policy,
        "unsigned": report.unsigned,
        "requirements": [r.as_dict() for r in report.rows],
        "tampered": [{"record": v.path.name, "problems": v.problems} for v in report.tampered],
        "store_problems": report.store_problems,
        "notes": report.notes,
        "posture": report.posture,
        "fingerprint": report.fingerprint,
        "facts": report.facts,
    }


def gate_cases(document: dict[str, Any]) -> list[Case]:
    """JUnit cases of a gate document: one per requirement row, then the verdict itself."""
    cases = [
        Case(
            name=row["requirement"],
            classname="gate.requirements",
            failure=None if row["status"] == "proven" else f"{row['status']}: {row['detail']}",
            output=str(row.get("evidence") or ""),
        )
        for row in document["requirements"]
    ]
    cases.append(
        Case(
            name=f"gate ({document['mode']})",
            classname="gate",
            failure=None if document["ok"] else document["reason"],
        )
    )
    return cases
