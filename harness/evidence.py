"""Survival evidence: one JSON record per experiment run, written atomically.

A record says what was done to what, and what happened: verdict (survived,
not-survived, aborted, error) with its reasons, the fault, the target, the
prober summary, steady states before and after, durations and data integrity.
It never holds a secret: the experiment's configuration and secrets are not
copied, only the target's endpoint, bucket and key.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any

SCHEMA = "flywheel-chaos/evidence/v1"
VERDICTS = ("survived", "not-survived", "aborted", "error")


def evidence_dir() -> Path:
    return Path(os.environ.get("FLYWHEEL_EVIDENCE_DIR") or "evidence").resolve()


def decide(
    journal: dict[str, Any],
    summary: dict[str, Any] | None,
    fault_actions: list[dict[str, Any]],
    refused: str | None,
) -> tuple[str, list[str]]:
    """The verdict of a run and the reasons for it."""
    reasons: list[str] = []
    status = journal.get("status")
    steady = journal.get("steady_states") or {}
    before = (steady.get("before") or {}).get("steady_state_met")
    after = (steady.get("after") or {}).get("steady_state_met")
    if refused:
        return "aborted", [refused]
    if status in ("interrupted", "aborted"):
        return "aborted", [f"the run was {status}"]
    if before is False:
        return "error", ["the steady state did not hold before the fault: nothing was proven"]
    failed = [a["name"] for a in fault_actions if a.get("status") != "succeeded"]
    if failed:
        return "error", [f"fault action(s) failed: {', '.join(str(f) for f in failed)}"]
    if not fault_actions:
        reasons.append("no fault action ran")
    if summary is None:
        return "error", ["no survival measurement"]
    if journal.get("deviated") or after is False:
        reasons.append("the steady state did not hold after the fault")
    if summary.get("within_budget") is False:
        reasons.append(
            f"longest outage {summary['longest_outage_ms']:.0f} ms exceeds the budget {summary['budget_ms']:.0f} ms"
        )
    if not summary.get("recovered"):
        reasons.append("the state authority had not recovered when measurement ended")
    if any(r.startswith(("the steady", "longest", "the state")) for r in reasons):
        return "not-survived", reasons
    return "survived", reasons or [
        f"steady state held; longest outage {summary['longest_outage_ms']:.0f} ms within budget"
    ]


def write_record(record: dict[str, Any], directory: Path | None = None) -> Path:
    """Write ``record`` atomically as ``<time>-<fault>-<id>.json``; returns the path."""
    target = directory or evidence_dir()
    target.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    name = f"{stamp}-{record.get('fault') or 'run'}-{record['id']}.json"
    handle, tmp = tempfile.mkstemp(prefix=".record-", suffix=".json", dir=target)
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(record, out, indent=2, sort_keys=True, default=str)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target / name


def new_record(**fields: Any) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "id": uuid.uuid4().hex[:12],
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
        "host": socket.gethostname(),
        **fields,
    }
