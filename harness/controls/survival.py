"""Survival control: measures the outage window while the fault is live.

From the start of the experiment (once the lease is held; the steady-state hypothesis
runs while its baseline is taken) until the experiment ends (rollbacks included, so that
recovery is seen) it runs :class:`harness.controls.prober.Prober` against the state
authority of the environment contract, notes when the method's fault actions
started and ended, and after the experiment (waiting at most
``recovery_wait_s`` for an outage still open) stores the summary for the
evidence control. The method starts only once the baseline (three HEADs and a canary
answered) is in. ``outage_budget_s`` is the longest outage the experiment
tolerates: beyond it the verdict is not-survived even if the final
hypothesis passes.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from flywheel_chaos import settings
from flywheel_chaos.s3.authority import load_authority
from harness.controls import current_run
from harness.controls.prober import Prober, summarize
from harness.controls.tofuloop import TofuLoop, stack_from_env

logger = logging.getLogger("flywheel_chaos.controls.survival")

_phase: dict[str, str] = {}


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    return dt.datetime.fromisoformat(iso).timestamp()


def _start_prober(
    head_interval_s: float,
    canary_interval_s: float,
    configuration: dict[str, Any] | None,
    secrets: dict[str, Any] | None,
) -> Prober:
    authority = load_authority(configuration=configuration, secrets=secrets)
    prober = Prober(authority, head_interval_s=head_interval_s, canary_interval_s=canary_interval_s)
    current_run().prober = prober
    prober.start()
    logger.info(
        "survival prober sampling %s every %.0f ms", authority.endpoint, head_interval_s * 1000
    )
    return prober


def before_experiment_control(
    context: dict[str, Any],
    outage_budget_s: float = 30.0,
    head_interval_s: float = 0.1,
    canary_interval_s: float = 1.0,
    recovery_wait_s: float = 90.0,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Start sampling as the experiment starts (after the safety control took the lease):
    the baseline is then taken while the steady-state hypothesis runs, not after it."""
    run = current_run()
    run.budget_ms = outage_budget_s * 1000
    if run.lease_refused or run.prober is not None:
        return
    if settings.FLYWHEEL_RUN_ID.get() != run.run_id:
        # the safety control has not taken the lease for this run (declared after this
        # one, or not at all): start at the method, as before the lease there was
        return
    _start_prober(head_interval_s, canary_interval_s, configuration, secrets)


def before_method_control(
    context: dict[str, Any],
    outage_budget_s: float = 30.0,
    head_interval_s: float = 0.1,
    canary_interval_s: float = 1.0,
    recovery_wait_s: float = 90.0,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    run = current_run()
    run.budget_ms = outage_budget_s * 1000
    if run.lease_refused:
        return
    prober = run.prober
    if prober is None:  # declared where the experiment's start is not seen: start it here
        prober = _start_prober(head_interval_s, canary_interval_s, configuration, secrets)
    stack = stack_from_env()
    if stack is not None:
        run.tofu_loop = TofuLoop(stack, prober.authority)
        run.tofu_loop.start()
    _phase["now"] = "method"
    # a baseline before the fault: three HEADs and one canary answered (at most 1 s from
    # here; usually already in, taken during the steady-state hypothesis)
    prober.wait_samples(head=3, canary=1, since=prober.started_at, within_s=1.0)


def after_method_control(context: Any, state: Any = None, **kwargs: Any) -> None:
    _phase["now"] = "after-method"


def after_activity_control(context: dict[str, Any], state: dict[str, Any], **kwargs: Any) -> None:
    if _phase.get("now") != "method" or context.get("type") != "action":
        return
    run = current_run()
    start, end = _epoch(state.get("start")), _epoch(state.get("end"))
    if start is not None and (run.fault_started_at is None or start < run.fault_started_at):
        run.fault_started_at = start
    if end is not None:
        run.fault_ended_at = end
    provider = context.get("provider") or {}
    entry: dict[str, Any] = {
        "name": context.get("name"),
        "status": state.get("status"),
        "start": state.get("start"),
        "end": state.get("end"),
        # what was done: the gate ties the fault to its own action by these
        "provider": {
            "type": provider.get("type"),
            "module": provider.get("module"),
            "func": provider.get("func"),
            "arguments": provider.get("arguments") or {},
        },
    }
    exception = state.get("exception")
    if exception:
        lines = exception if isinstance(exception, list) else [str(exception)]
        entry["error"] = str(lines[-1]).strip()[-500:]
    output = state.get("output")
    if isinstance(output, dict):
        entry["output"] = output  # the fault's own proof that it took effect
        if output.get("volume_overlap"):
            entry["volume_overlap"] = output["volume_overlap"]
    run.fault_actions.append(entry)


def after_experiment_control(
    context: dict[str, Any],
    state: dict[str, Any],
    outage_budget_s: float = 30.0,
    head_interval_s: float = 0.1,
    canary_interval_s: float = 1.0,
    recovery_wait_s: float = 90.0,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    _phase.pop("now", None)
    run = current_run()
    prober = run.prober
    if prober is None:
        return
    # a few samples after the experiment: two HEADs begun after it, taken at once rather
    # than at the next intervals (at most 0.5 s)
    prober.wait_samples(head=2, canary=0, since=time.time(), within_s=0.5, hurry=True)
    # sample on until no outage window is open, or the bound passes: a window open only
    # because sampling stopped would read as "not recovered"
    if not prober.finish(time.monotonic() + recovery_wait_s):
        logger.warning(
            "the state authority had not recovered %ss after the experiment", recovery_wait_s
        )
    run.prober_summary = summarize(
        prober.snapshot(),
        prober.started_at,
        prober.stopped_at,
        run.fault_started_at,
        run.fault_ended_at,
        run.budget_ms,
        prober.errors,
    )
    if run.tofu_loop is not None:
        run.tofu_summary = run.tofu_loop.stop()
    run.prober_summary["canaries_written"] = prober.canaries_written
    run.prober_summary["canaries_verified"] = prober.canaries_verified
