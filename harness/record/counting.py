"""Which records count for a requirement, and as what: the gate's rules, as pure functions.

Every fresh run of a requirement's fault against this target counts, whatever its verdict,
once its fault action began: a failing run never drops out of the window. Each record is
judged again here from what it holds, never from one boolean it carries:

* **pass** only when the verdict is the kind's own (``survived`` for experiments,
  ``passed`` for proofs and the guard), the fault is re-derived from the record's own fault
  actions and tied to its fingerprinted workloads, the longest outage is a finite number
  within budget, the prober watched the whole time, and a proof ran every step it must;
* **fail** otherwise (once the fault began);
* **stale** when it is about another posture (fingerprint) or other verdict rules: shown,
  never counted either way;
* **blocking** when it failed against a target that could not be read, or carries a
  timestamp without an offset or in the future: it keeps the row from green, named;
* **excluded** (schema v1, dry run, a fault that never began): shown, never counted.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Final, Literal

from flywheel_chaos.s3.checks import CHECKS
from harness.record.evidence import PASSING, SCHEMA_V2, Verified
from harness.record.policy import Requirement
from harness.record.posture import differences
from harness.record.verdict import (
    MAX_COVERAGE_GAP_MS,
    RULES_VERSION,
    fault_began,
    fault_effect,
    workload_uids,
)

__all__ = ["FUTURE_SLACK_S", "Judged", "judge", "recorded_at"]

FUTURE_SLACK_S: Final = 300.0
"""How far in the future a record's time may be (clock skew) before it blocks the row."""

EXPECTED_STEPS: Final[dict[str, frozenset[tuple[str, str]]]] = {
    "tofu-noop-plan": frozenset({("probes.tofu", "disposable_stack_noop_plan")}),
    "backup-restore": frozenset(
        {
            ("probes.backup", "versioned_restore_ok"),
            ("probes.backup", "backup_copy_restore_ok"),
            ("probes.backup", "retention_rules_reported"),
            ("probes.backup", "state_key_backup_ok"),
        }
    ),
}
"""The steps (provider module and function) each proof must have run and passed."""
GUARD_CHECKS: Final = frozenset(spec.name for spec in CHECKS)

Status = Literal["pass", "fail", "stale", "blocking", "excluded"]


@dataclass(frozen=True)
class Judged:
    verified: Verified
    status: Status
    why: str

    @property
    def record(self) -> dict[str, Any]:
        return self.verified.record or {}

    @property
    def name(self) -> str:
        return self.verified.path.name


def recorded_at(record: dict[str, Any]) -> dt.datetime | None:
    """The record's time when it is RFC 3339 with an offset, else None."""
    try:
        moment = dt.datetime.fromisoformat(str(record.get("recorded_at")))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _outage_within(record: dict[str, Any], requirement: Requirement) -> str | None:
    """Why the record's prober summary does not show an outage within budget (None: it does)."""
    prober = record.get("prober")
    if not isinstance(prober, dict):
        return "no prober summary"
    longest = prober.get("longest_outage_ms")
    if (
        isinstance(longest, bool)
        or not isinstance(longest, int | float)
        or not math.isfinite(longest)
    ):
        return f"the longest outage is not a number ({longest!r})"
    budget = requirement.outage_budget_s
    if budget is not None and longest > budget * 1000:
        return f"outage {longest / 1000:.1f} s exceeds the policy budget {budget:g} s"
    gap = (prober.get("coverage") or {}).get("largest_gap_ms")
    if isinstance(gap, bool) or not isinstance(gap, int | float) or not math.isfinite(gap):
        return f"the prober's coverage is unknown ({gap!r})"
    if gap > MAX_COVERAGE_GAP_MS:
        return f"the prober left {gap:.0f} ms unwatched (more than {MAX_COVERAGE_GAP_MS:.0f} ms)"
    return None


def _proof_steps(record: dict[str, Any], fault: str) -> str | None:
    steps = record.get("proof_steps") or []
    ran = {
        (str((s.get("provider") or {}).get("module")), str((s.get("provider") or {}).get("func")))
        for s in steps
        if isinstance(s, dict) and s.get("status") == "succeeded"
    }
    missing = sorted(f"{m}.{f}" for m, f in EXPECTED_STEPS.get(fault, frozenset()) - ran)
    if not steps:
        return "the proof ran no step"
    if missing:
        return f"the proof did not run and pass: {', '.join(missing)}"
    return None


def _passed(record: dict[str, Any], requirement: Requirement) -> str | None:
    """Why a counted record is a failure (None: it passed)."""
    verdict = str(record.get("verdict"))
    reasons = "; ".join(record.get("reasons") or [])
    if requirement.kind == "experiment":
        if verdict != "survived":
            return f"{verdict}: {reasons}"
        effect = fault_effect(
            record.get("fault_actions") or [],
            workload_uids(record.get("fingerprint")),
            requirement.fault,
        )
        if not effect["took_effect"]:
            return f"survived, but the record does not show the fault took effect: {effect['why']}"
        if (record.get("tofu") or {}).get("phantom"):
            return "survived, but a tofu plan during the fault read an empty or other state"
        return _outage_within(record, requirement)
    if verdict not in PASSING or verdict == "survived":
        return f"{verdict}: {reasons}"
    if requirement.kind == "proof":
        return _proof_steps(record, requirement.fault)
    checks = {c.get("name"): c.get("ok") for c in record.get("checks") or [] if isinstance(c, dict)}
    missing = sorted(n for n in GUARD_CHECKS if checks.get(n) is not True)
    return f"the guard did not pass: {', '.join(missing)}" if missing else None


def _not_countable(record: dict[str, Any], requirement: Requirement) -> tuple[Status, str] | None:
    if record.get("schema") != SCHEMA_V2:
        return "excluded", "schema v1"
    if record.get("rules_version") != RULES_VERSION:
        return (
            "stale",
            f"recorded under verdict rules {record.get('rules_version')}, not {RULES_VERSION}",
        )
    if record.get("dry_run"):
        return "excluded", "dry run"
    if requirement.kind == "experiment" and not fault_began(record):
        return "excluded", "the fault never began (nothing was changed)"
    return None


def judge(
    verified: Verified, requirement: Requirement, live: dict[str, Any], now: dt.datetime
) -> Judged | None:
    """How ``verified`` counts for ``requirement`` (None: not its record, or too old)."""
    record = verified.record or {}
    if record.get("kind") != requirement.kind or record.get("fault") != requirement.fault:
        return None
    moment = recorded_at(record)
    if moment is None:
        return Judged(
            verified, "blocking", f"recorded_at {record.get('recorded_at')!r} has no offset"
        )
    if (moment - now).total_seconds() > FUTURE_SLACK_S:
        return Judged(verified, "blocking", f"recorded_at {moment.isoformat()} is in the future")
    if (now - moment).total_seconds() / 86400 > requirement.max_age_days:
        return None
    refusal = _not_countable(record, requirement)
    if refusal is not None:
        return Judged(verified, *refusal)
    failed = _passed(record, requirement)
    changed = differences(record.get("fingerprint"), live)
    if changed and "error" in (record.get("fingerprint") or {}):
        if failed:
            return Judged(
                verified, "blocking", f"failed against a target that could not be read: {failed}"
            )
        return Judged(verified, "excluded", "its target could not be read")
    if changed:
        return Judged(verified, "stale", "; ".join(changed))
    return Judged(verified, "fail" if failed else "pass", failed or str(record.get("verdict")))
