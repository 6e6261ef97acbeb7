"""The verdict of a run, and the proof that its fault happened.

:func:`decide` turns what a run left (the Chaos Toolkit journal, the survival
prober's summary, the fault actions' own outputs) into one of ``survived``,
``not-survived``, ``aborted`` or ``error``, with reasons. Survived needs proof:

* the fault took effect (:func:`fault_effect`): not a dry run, and at least
  one of the state authority's pods deleted or evicted, or the node fault
  confirmed by the node's own Ready condition (never a list of pods it would
  displace); otherwise the run is ``aborted: fault did not take effect``;
* the prober watched the whole time: a gap between HEAD samples longer than
  :data:`MAX_COVERAGE_GAP_MS` (a stalled sampler) makes the run ``error``,
  since an unwatched second reads as uptime;
* the lease was held throughout (a run that lost it is ``aborted``).
"""

from __future__ import annotations

from typing import Any

MAX_COVERAGE_GAP_MS = 1000.0
"""Longest time between one HEAD sample's answer and the next sample's start."""

__all__ = ["MAX_COVERAGE_GAP_MS", "decide", "fault_effect"]


def _namespace_of(ident: str) -> str:
    return ident.split("/", 1)[0] if "/" in ident else ""


def fault_effect(fault_actions: list[dict[str, Any]], state_namespace: str) -> dict[str, Any]:
    """What the fault actions' own outputs show they did to the state authority.

    ``state_namespace`` is where the authority's pods live: a deleted or
    evicted pod there counts; so does a node fault the action confirmed.
    """
    pods: list[str] = []
    confirmed: list[str] = []
    dry = False
    for action in fault_actions:
        output = action.get("output")
        if not isinstance(output, dict):
            continue
        dry = dry or bool(output.get("dry_run"))
        if output.get("dry_run"):
            continue
        namespace = str(output.get("namespace") or "")
        for pod in output.get("deleted") or []:
            if isinstance(pod, dict) and namespace == state_namespace:
                pods.append(f"{namespace}/{pod.get('name')} deleted")
        for pod in output.get("pods") or []:
            ident = str(pod.get("pod", "")) if isinstance(pod, dict) else ""
            if _namespace_of(ident) == state_namespace and pod.get("evicted_at"):
                pods.append(f"{ident} evicted")
        if output.get("confirmed") is True:
            # a node fault counts only when the node itself showed it: a plan of pods it
            # would displace proves nothing
            confirmed.append(str(output.get("confirmation") or f"node {output.get('node')}"))
    took = not dry and bool(pods or confirmed)
    if dry:
        why = "a fault action ran as a dry run"
    elif not fault_actions:
        why = "no fault action ran"
    elif not took:
        why = f"no pod of the state authority (namespace {state_namespace}) was deleted or evicted, and no node fault was confirmed"
    else:
        why = "; ".join([*pods, *confirmed])
    return {
        "took_effect": took,
        "dry_run": dry,
        "state_authority_pods": pods,
        "node_fault_confirmed": confirmed,
        "why": why,
    }


def decide(
    journal: dict[str, Any],
    summary: dict[str, Any] | None,
    fault_actions: list[dict[str, Any]],
    refused: str | None,
    lease_lost: str | None = None,
    effect: dict[str, Any] | None = None,
) -> tuple[str, list[str]]:
    """The verdict of a run and the reasons for it.

    ``effect`` is :func:`fault_effect`'s result; without one the run cannot
    prove its fault happened and is aborted.
    """
    reasons: list[str] = []
    status = journal.get("status")
    steady = journal.get("steady_states") or {}
    before = (steady.get("before") or {}).get("steady_state_met")
    after = (steady.get("after") or {}).get("steady_state_met")
    if refused:
        return "aborted", [refused]
    if lease_lost:
        return "aborted", [lease_lost]
    if status in ("interrupted", "aborted"):
        return "aborted", [f"the run was {status}"]
    if before is False:
        return "error", ["the steady state did not hold before the fault: nothing was proven"]
    failed = [a["name"] for a in fault_actions if a.get("status") != "succeeded"]
    if failed:
        return "error", [f"fault action(s) failed: {', '.join(str(f) for f in failed)}"]
    if effect is None or not effect.get("took_effect"):
        why = (effect or {}).get("why") or "no proof that the fault happened"
        return "aborted", [f"fault did not take effect: {why}"]
    if summary is None:
        return "error", ["no survival measurement"]
    coverage = summary.get("coverage") or {}
    gap = coverage.get("largest_gap_ms")
    if gap is None or gap > MAX_COVERAGE_GAP_MS:
        return "error", [
            f"the survival prober's coverage has a gap of {gap} ms between samples "
            f"(more than {MAX_COVERAGE_GAP_MS:.0f} ms; {coverage.get('prober_errors', 0)} "
            "sample(s) lost to its own errors): the outage measurement cannot be trusted"
        ]
    if journal.get("deviated") or after is False:
        reasons.append("the steady state did not hold after the fault")
    if summary.get("within_budget") is False:
        reasons.append(
            f"longest outage {summary['longest_outage_ms']:.0f} ms exceeds the budget {summary['budget_ms']:.0f} ms"
        )
    if not summary.get("recovered"):
        reasons.append("the state authority had not recovered when measurement ended")
    if summary.get("state_key_missing"):
        # the RustFS incident's shape: a plan at that moment would have seen an empty state
        reasons.append(
            f"the state key was reported missing {summary['state_key_missing']} time(s) "
            "while the fault was live (NoSuchKey/NoSuchBucket, not unreachable)"
        )
    for overlap in (o for a in fault_actions for o in a.get("volume_overlap") or []):
        # two servers on one single-writer data directory: the proof is void
        reasons.append(
            f"replacement pod {overlap['replacement_pod']} ran on ReadWriteOnce claim "
            f"{overlap['claim']} for {overlap['overlap_s']:.1f} s while {overlap['deleted_pod']} "
            "still held it (two writers on one volume; use ReadWriteOncePod or a StatefulSet)"
        )
    if reasons:
        return "not-survived", reasons
    return "survived", [
        f"steady state held; fault took effect ({effect['why']}); longest outage "
        f"{summary['longest_outage_ms']:.0f} ms within budget"
    ]
