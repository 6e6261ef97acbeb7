"""Evidence control: one JSON record per run, and the verdict told to whoever ran it.

Before the experiment it puts a redacting filter on Chaos Toolkit's log handlers
(secrets from the environment, the experiment's resolved ``secrets``, boto profiles and
the kubeconfig), and reads the protected state key (HEAD only) and the target's
fingerprint (:mod:`harness.record.posture`) while the steady-state hypothesis runs: the
method waits for both.

After the experiment (after the survival control's summary) it reads the key
again, decides the verdict (:func:`harness.record.verdict.decide`: survived
needs proof that the fault took effect and a prober that watched the whole
time), writes the record (validated first: a record that fails goes to
``rejected/``), publishes the chain head to the evidence store when one is
configured, and:

* logs the verdict and its reasons through Chaos Toolkit's own logger, so it
  is the last thing ``chaos run`` prints;
* marks the journal deviated for any verdict other than survived/passed, so
  ``chaos run`` exits 1 and CI or a game day fails on it;
* adds ``flywheel`` (verdict, reasons, record path) to the journal and
  redacts the journal in place, so the copy Chaos Toolkit writes holds no
  secret either.

Nothing is lost silently: any failure here is logged as an error and makes
the run exit non-zero.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from flywheel_chaos import settings
from flywheel_chaos.s3.authority import ConfigurationError, load_authority
from flywheel_chaos.s3.checks import check_state_key
from flywheel_chaos.s3.client import activity_authority
from flywheel_chaos.s3.errors import StateAuthorityError
from harness.controls import current_run
from harness.record.evidence import (
    PASSING,
    RecordRejected,
    evidence_dir,
    new_record,
)
from harness.record.posture import Target, fingerprint, read_target
from harness.record.recorder import record
from harness.record.redact import RedactingFilter, Redactor
from harness.record.verdict import RULES_VERSION, FaultEffect, decide, fault_effect, workload_uids

logger = logging.getLogger("flywheel_chaos.controls.evidence")
chaos_logger = logging.getLogger("chaostoolkit")
"""Chaos Toolkit's own logger: what it logs reaches the console and ``--log-file``."""

OUTPUT_LIMIT = 16_384
"""Bytes of one fault action's output kept in the record (as JSON); beyond, a bounded summary."""

BEFORE_WAIT_S = 90.0
"""How long the method waits for the state key and the target to be read before the fault
(each read has its own shorter timeout: this bounds them all)."""

_installed: list[tuple[logging.Handler, RedactingFilter]] = []
_redactor: dict[str, Redactor] = {}
_before: dict[str, tuple[threading.Thread, dict[str, Any]]] = {}
"""The run's reader of the target before the fault, and what it read (its own dict: a reader
that overran its wait can never write into a later run's)."""


def after_activity_control(
    context: dict[str, Any],
    state: Any,
    rca_after: str = "",
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """With ``rca_after`` naming an activity, take the RCA bundle right after it, while its
    fault is live: pointed at the bucket the activity names in its output (``bucket``), or
    the state bucket. Bounded and never failing, like every bundle."""
    if not rca_after or context.get("name") != rca_after:
        return
    run = current_run()
    output = state.get("output") if isinstance(state, dict) else None
    bucket = str(output.get("bucket") or "") if isinstance(output, dict) else ""
    objects = output.get("objects") if isinstance(output, dict) else None
    key = str(objects[0].get("key") or "") if isinstance(objects, list) and objects else ""
    redactor = _redactor.get("run") or Redactor.from_context(secrets)
    try:
        from harness.record.rca import collect  # only for a bundle: not every run's import

        authority = load_authority(configuration=configuration, secrets=secrets)
        authority = authority.with_overrides(bucket=bucket, key=key)
        bundle = collect(
            authority,
            evidence_dir() / "rca" / f"rca-{run.run_id}-{rca_after}.tar.gz",
            record={"experiment": context.get("name"), "fault": run.fault, "verdict": "live"},
            redactor=redactor,
        )
    except Exception as exc:
        chaos_logger.warning("flywheel-chaos: no RCA bundle while the fault was live: %s", exc)
        run.live_rca = {"mismatch": False, "why": f"not collected: {exc}"}
        return
    chaos_logger.info(
        "flywheel-chaos: RCA bundle %s taken while %s was live (mismatch: %s)",
        bundle["file"],
        rca_after,
        bundle.get("mismatch"),
    )
    run.live_rca = {**bundle, "file": f"rca/{bundle['file']}"}


def _state_key(
    configuration: dict[str, Any] | None, secrets: dict[str, Any] | None
) -> dict[str, Any]:
    try:
        head = check_state_key(activity_authority(configuration=configuration, secrets=secrets))
    except StateAuthorityError as exc:
        return {"ok": False, "error": str(exc)}
    return {
        "ok": True,
        "etag": head["etag"],
        "size": head["size"],
        "version_id": head["version_id"],
    }


def _install_redaction(redactor: Redactor) -> None:
    _remove_redaction()
    handlers = {*logging.getLogger().handlers, *chaos_logger.handlers}
    for handler in handlers:
        log_filter = RedactingFilter(redactor)
        handler.addFilter(log_filter)
        _installed.append((handler, log_filter))


def _remove_redaction() -> None:
    while _installed:
        handler, log_filter = _installed.pop()
        handler.removeFilter(log_filter)


def _target(configuration: dict[str, Any] | None, secrets: dict[str, Any] | None) -> dict[str, str]:
    try:
        authority = load_authority(configuration=configuration, secrets=secrets)
    except ConfigurationError:
        return {}
    return {"endpoint": authority.endpoint, "bucket": authority.bucket, "key": authority.key}


def before_experiment_control(
    context: dict[str, Any],
    fault: str = "",
    state_namespace: str = "",
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    run = current_run()
    run.fault = fault
    redactor = Redactor.from_context(secrets)
    _redactor["run"] = redactor
    _install_redaction(redactor)
    if run.lease_refused:
        return
    # read while the steady-state hypothesis runs; the method waits for it (before_method)
    read: dict[str, Any] = {}
    reader = threading.Thread(
        target=_read_before,
        args=(read, state_namespace, configuration, secrets),
        name="evidence-before",
        daemon=True,
    )
    _before["run"] = (reader, read)
    reader.start()


def _read_before(
    into: dict[str, Any],
    state_namespace: str,
    configuration: dict[str, Any] | None,
    secrets: dict[str, Any] | None,
) -> None:
    """The state key's HEAD and the target's fingerprint, as they are before the fault."""
    try:
        into["integrity_before"] = _state_key(configuration, secrets)
        target = _target(configuration, secrets)
        into["fingerprint"] = fingerprint(
            read_target(Target.from_env(state_namespace)),
            target.get("endpoint", ""),
            target.get("bucket", ""),
            target.get("key", ""),
        )
    except Exception as exc:  # said; the record then says the target is unknown (not counted)
        why = f"reading the target before the fault failed: {exc!r}"
        logger.error("%s", why)
        into.setdefault("integrity_before", {"ok": False, "error": why})
        into["fingerprint"] = {"error": why}


def _join_before() -> None:
    """Wait (at most :data:`BEFORE_WAIT_S`) for what was read before the fault, into the run."""
    started = _before.pop("run", None)
    if started is None:
        return
    reader, read = started
    reader.join(timeout=BEFORE_WAIT_S)
    run = current_run()
    if reader.is_alive():
        why = f"the state key and the target were not read within {BEFORE_WAIT_S:g} s"
        logger.error("%s: the record says they are unknown", why)
        run.integrity_before = {"ok": False, "error": why}
        run.fingerprint = {"error": why}
        return
    run.integrity_before = read.get("integrity_before")
    run.fingerprint = read.get("fingerprint")


def before_method_control(context: Any, **kwargs: Any) -> None:
    """The fault waits until the state key and the target have been read as they were."""
    _join_before()


def _bounded(output: Any) -> Any:
    text = json.dumps(output, default=str)
    if len(text) <= OUTPUT_LIMIT:
        return output
    if isinstance(output, dict):
        kept = {
            k: v for k, v in output.items() if isinstance(v, str | int | float | bool) or v is None
        }
        return {**kept, "truncated": f"{len(text)} bytes of output, {OUTPUT_LIMIT} kept"}
    return {"truncated": f"{len(text)} bytes of output", "head": text[:OUTPUT_LIMIT]}


def _proof_verdict(
    journal: dict[str, Any],
    refused: str | None,
    rca_after: str = "",
    live_rca: dict[str, Any] | None = None,
) -> tuple[str, list[str]]:
    """A proof passes when its steady state held and every method probe succeeded (and, with
    ``rca_after``, the bundle taken while the fault was live named the mismatch: no bundle,
    because no activity of that name ran, fails it too)."""
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
    if rca_after and live_rca is None:
        return "failed", [
            f"no RCA bundle was taken while the fault was live: no activity named "
            f"{rca_after!r} ran (the evidence control's rca_after)"
        ]
    if rca_after and live_rca is not None and not live_rca.get("mismatch"):
        return "failed", [
            "the RCA bundle taken while the fault was live did not show the bucket missing "
            f"from S3 with its markers on disk ({live_rca.get('why') or 'see rca.md'})"
        ]
    return "passed", [f"{len(journal.get('run') or [])} proof step(s) passed"]


def _redact_in_place(document: dict[str, Any], redactor: Redactor) -> None:
    clean = redactor.document(document)
    document.clear()
    document.update(clean)


@dataclass(frozen=True)
class Recording:
    """What the evidence control was told in the experiment (its ``arguments``)."""

    fault: str = ""
    target_node: str = ""
    proof: bool = False
    state_namespace: str = ""
    rca: bool = True
    rca_after: str = ""


def after_experiment_control(
    context: dict[str, Any],
    state: dict[str, Any],
    fault: str = "",
    target_node: str = "",
    proof: bool = False,
    state_namespace: str = "",
    rca: bool = True,
    rca_after: str = "",
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    _join_before()  # a run that never reached its method (its hypothesis failed)
    redactor = _redactor.pop("run", None) or Redactor.from_context(secrets)
    told = Recording(fault, target_node, proof, state_namespace, rca, rca_after)
    try:
        _record(state, context, told, configuration, secrets, redactor)
    except Exception as exc:  # chaoslib would swallow it: say it, and fail the run
        state["deviated"] = True
        state["flywheel"] = {"verdict": "error", "reasons": [f"evidence not recorded: {exc}"]}
        chaos_logger.error(
            "flywheel-chaos: the evidence of this run was NOT recorded: %s",
            redactor.text(str(exc)),
        )
    finally:
        _redact_in_place(state, redactor)
        _remove_redaction()


def _verdict(
    journal: dict[str, Any], told: Recording, effect: FaultEffect | None
) -> tuple[str, list[str]]:
    run = current_run()
    if told.proof:
        refused = run.lease_refused or run.lease_lost
        return _proof_verdict(journal, refused, told.rca_after, run.live_rca)
    return decide(
        journal,
        run.prober_summary,
        run.fault_actions,
        run.lease_refused,
        run.lease_lost,
        effect,
        run.tofu_summary,
    )


def _steady_failures(journal: dict[str, Any]) -> list[dict[str, Any]]:
    """Each steady-state probe that failed, with its error's last line (its class first)."""
    found = []
    for phase in ("before", "after"):
        for probe in ((journal.get("steady_states") or {}).get(phase) or {}).get("probes") or []:
            if probe.get("status") == "succeeded" and probe.get("tolerance_met", True):
                continue
            exception = probe.get("exception") or []
            lines = exception if isinstance(exception, list) else [str(exception)]
            last = str(lines[-1]).strip() if lines else "tolerance not met"
            found.append(
                {
                    "phase": phase,
                    "probe": (probe.get("activity") or {}).get("name"),
                    "error": last.split(": ", 1)[-1][:300],
                }
            )
    return found


def _steps(journal: dict[str, Any], told: Recording) -> dict[str, Any]:
    """The record's fault actions, proof steps and rollbacks (outputs bounded)."""
    run = current_run()
    proof_steps = [
        {
            "name": r.get("activity", {}).get("name"),
            "provider": {
                k: (r.get("activity", {}).get("provider") or {}).get(k) for k in ("module", "func")
            },
            "status": r.get("status"),
            "output": _bounded(r.get("output")),
        }
        for r in journal.get("run") or []
    ]
    return {
        "fault_actions": [
            {**a, "output": _bounded(a["output"])} if "output" in a else a
            for a in run.fault_actions
        ],
        "proof_steps": proof_steps if told.proof else None,
        "rollbacks": [
            {"name": r.get("activity", {}).get("name"), "status": r.get("status")}
            for r in journal.get("rollbacks") or []
        ],
    }


def _document(
    journal: dict[str, Any],
    context: dict[str, Any],
    told: Recording,
    verdict: tuple[str, list[str]],
    integrity: dict[str, Any],
    target: dict[str, str],
    effect: FaultEffect | None,
) -> dict[str, Any]:
    run, steady = current_run(), journal.get("steady_states") or {}
    summary = run.prober_summary
    return new_record(
        kind="proof" if told.proof else "experiment",
        rules_version=RULES_VERSION,
        run_id=run.run_id,
        experiment=context.get("title"),
        fault=told.fault or run.fault,
        target=target,
        fingerprint=run.fingerprint,
        fault_effect=effect,
        verdict=verdict[0],
        reasons=verdict[1],
        dry_run=bool(context.get("dry") or journal.get("dry") or (effect and effect["dry_run"])),
        status=journal.get("status"),
        deviated=journal.get("deviated"),
        started=journal.get("start"),
        ended=journal.get("end"),
        duration_s=journal.get("duration"),
        steady_states={
            "before": (steady.get("before") or {}).get("steady_state_met"),
            "after": (steady.get("after") or {}).get("steady_state_met"),
        },
        steady_failures=_steady_failures(journal),
        **_steps(journal, told),
        prober=summary,
        tofu=run.tofu_summary,
        integrity={
            **integrity,
            "canaries_written": (summary or {}).get("canaries_written"),
            "canaries_verified": (summary or {}).get("canaries_verified"),
        },
        lab=settings.FLYWHEEL_LAB_DIR.is_set(),
    )


def _record(
    journal: dict[str, Any],
    context: dict[str, Any],
    told: Recording,
    configuration: dict[str, Any] | None,
    secrets: dict[str, Any] | None,
    redactor: Redactor,
) -> None:
    run = current_run()
    after = None if run.lease_refused else _state_key(configuration, secrets)
    before = run.integrity_before
    effect = (
        None
        if told.proof
        else fault_effect(
            run.fault_actions, workload_uids(run.fingerprint), told.fault or run.fault
        )
    )
    verdict, reasons = _verdict(journal, told, effect)
    unchanged = None
    if before and after and before.get("ok") and after.get("ok"):
        unchanged = before["etag"] == after["etag"] and before["size"] == after["size"]
        if not unchanged:
            verdict, reasons = (
                "not-survived",
                [*reasons, "the state key changed during the experiment"],
            )
    target: dict[str, str] = _target(configuration, secrets)
    if told.target_node:
        target["node"] = told.target_node
    integrity = {
        "state_key_before": before,
        "state_key_after": after,
        "state_key_unchanged": unchanged,
    }
    document = _document(journal, context, told, (verdict, reasons), integrity, target, effect)
    if run.live_rca is not None and run.live_rca.get("file"):
        document["rca"] = run.live_rca
    if verdict not in PASSING:
        journal["deviated"] = True  # chaos run exits 1: CI and game days fail on it
        if told.rca and not run.lease_refused and "rca" not in document:
            document["rca"] = _rca(document, configuration, secrets, redactor)
    _publish(document, journal, redactor)


def _publish(document: dict[str, Any], journal: dict[str, Any], redactor: Redactor) -> None:
    """Write the record (and its store copy), and tell the run its verdict."""
    verdict, reasons = document["verdict"], document["reasons"]
    try:
        written = record(
            document,
            journal={k: v for k, v in journal.items() if k != "flywheel"},
            redactor=redactor,
        )
    except RecordRejected as rejected:
        journal["deviated"] = True
        journal["flywheel"] = {
            "verdict": "error",
            "reasons": [str(rejected)],
            "rejected": str(rejected.path),
        }
        chaos_logger.error("flywheel-chaos: %s", rejected)
        return
    path = written.path
    journal["flywheel"] = {"verdict": verdict, "reasons": reasons, "evidence": str(path)}
    if written.store:
        journal["flywheel"]["store"] = written.store
        if not written.published:
            chaos_logger.warning("flywheel-chaos: record kept in %s, but %s", path, written.store)
    line = f"flywheel-chaos verdict: {verdict}: {'; '.join(reasons)} (evidence {path})"
    if verdict in PASSING:
        chaos_logger.info(redactor.text(line))
    else:
        chaos_logger.error(redactor.text(line))


def _rca(
    document: dict[str, Any],
    configuration: dict[str, Any] | None,
    secrets: dict[str, Any] | None,
    redactor: Redactor,
) -> dict[str, Any] | None:
    """An RCA bundle beside the evidence for a run that did not survive (bounded, never fails)."""
    try:
        from harness.record.rca import collect  # a run that survived never imports it

        authority = load_authority(configuration=configuration, secrets=secrets)
        directory = evidence_dir()
        bundle = collect(
            authority,
            directory / "rca" / f"rca-{document['id']}.tar.gz",
            record=document,
            redactor=redactor,
        )
    except Exception as exc:
        chaos_logger.warning("flywheel-chaos: no RCA bundle for this run: %s", exc)
        return None
    chaos_logger.info(
        "flywheel-chaos: RCA bundle %s (%d bytes, %.1f s)",
        bundle["file"],
        bundle["bytes"],
        bundle["seconds"],
    )
    return {**bundle, "file": f"rca/{bundle['file']}"}
