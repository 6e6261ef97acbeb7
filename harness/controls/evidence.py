"""Evidence control: writes one JSON record per run into ``FLYWHEEL_EVIDENCE_DIR``.

Before the experiment it reads the protected state key (HEAD only); after the
experiment (after the survival control's summary) it reads it again and
writes the record: verdict, reasons, fault, target, prober summary, steady
states, durations, data integrity. It also adds ``flywheel`` (verdict and
record path) to the Chaos Toolkit journal.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from harness.controls import current_run
from harness.record.evidence import decide, new_record, write_record
from probes.failures import StateAuthorityError
from probes.s3client import ConfigurationError, load_authority
from probes.state_authority import state_key_readable

logger = logging.getLogger("flywheel_chaos.controls.evidence")


def _state_key(
    configuration: dict[str, Any] | None, secrets: dict[str, Any] | None
) -> dict[str, Any]:
    try:
        head = state_key_readable(configuration=configuration, secrets=secrets)
    except StateAuthorityError as exc:
        return {"ok": False, "error": str(exc)}
    return {
        "ok": True,
        "etag": head["etag"],
        "size": head["size"],
        "version_id": head["version_id"],
    }


def before_experiment_control(
    context: dict[str, Any],
    fault: str = "",
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    run = current_run()
    run.fault = fault
    if not run.lease_refused:
        run.integrity_before = _state_key(configuration, secrets)


def _proof_verdict(journal: dict[str, Any], refused: str | None) -> tuple[str, list[str]]:
    """A proof passes when its steady state held and every method probe succeeded."""
    if refused:
        return "aborted", [refused]
    if journal.get("status") in ("interrupted", "aborted"):
        return "aborted", [f"the run was {journal.get('status')}"]
    failed = [
        f"{r.get('activity', {}).get('name')}: {str(r.get('exception') or r.get('status'))[-300:]}"
        for r in journal.get("run") or []
        if r.get("status") != "succeeded"
    ]
    if failed or journal.get("deviated") or journal.get("status") != "completed":
        return "failed", failed or [f"the run ended {journal.get('status')}"]
    return "passed", [f"{len(journal.get('run') or [])} proof step(s) passed"]


def after_experiment_control(
    context: dict[str, Any],
    state: dict[str, Any],
    fault: str = "",
    target_node: str = "",
    proof: bool = False,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    run = current_run()
    journal = state
    after = None if run.lease_refused else _state_key(configuration, secrets)
    before = run.integrity_before
    summary = run.prober_summary
    if proof:
        verdict, reasons = _proof_verdict(journal, run.lease_refused)
    else:
        verdict, reasons = decide(journal, summary, run.fault_actions, run.lease_refused)
    unchanged = None
    if before and after and before.get("ok") and after.get("ok"):
        unchanged = before["etag"] == after["etag"] and before["size"] == after["size"]
        if not unchanged:
            verdict, reasons = (
                "not-survived",
                [*reasons, "the state key changed during the experiment"],
            )
    try:
        authority = load_authority(configuration=configuration, secrets=secrets)
        target = {"endpoint": authority.endpoint, "bucket": authority.bucket, "key": authority.key}
    except ConfigurationError:
        target = {}
    if target_node:
        target["node"] = target_node
    steady = journal.get("steady_states") or {}
    record = new_record(
        kind="proof" if proof else "experiment",
        run_id=run.run_id,
        experiment=context.get("title"),
        fault=fault or run.fault,
        target=target,
        verdict=verdict,
        reasons=reasons,
        dry_run=bool(context.get("dry") or journal.get("dry")),  # chaos run --dry=...
        status=journal.get("status"),
        deviated=journal.get("deviated"),
        started=journal.get("start"),
        ended=journal.get("end"),
        duration_s=journal.get("duration"),
        steady_states={
            "before": (steady.get("before") or {}).get("steady_state_met"),
            "after": (steady.get("after") or {}).get("steady_state_met"),
        },
        fault_actions=run.fault_actions,
        proof_steps=[
            {
                "name": r.get("activity", {}).get("name"),
                "status": r.get("status"),
                "output": r.get("output"),
            }
            for r in journal.get("run") or []
        ]
        if proof
        else None,
        rollbacks=[
            {"name": r.get("activity", {}).get("name"), "status": r.get("status")}
            for r in journal.get("rollbacks") or []
        ],
        prober=summary,
        integrity={
            "state_key_before": before,
            "state_key_after": after,
            "state_key_unchanged": unchanged,
            "canaries_written": (summary or {}).get("canaries_written"),
            "canaries_verified": (summary or {}).get("canaries_verified"),
        },
        lab=bool(os.environ.get("FLYWHEEL_LAB_DIR")),
    )
    path = write_record(record, journal={k: v for k, v in journal.items() if k != "flywheel"})
    journal["flywheel"] = {"verdict": verdict, "reasons": reasons, "evidence": str(path)}
    logger.info("verdict %s (%s); evidence %s", verdict, "; ".join(reasons), path)
