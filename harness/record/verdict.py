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

from collections.abc import Iterable
from typing import Any, Final, TypedDict

RULES_VERSION: Final = 2
"""The verdict rules' version, recorded in every record: bumped whenever the verdict, the
fault-effect or the prober rules change. The gate counts a record only while its rules
version is today's (a release that changes none of them keeps every record counting)."""

MAX_COVERAGE_GAP_MS = 1000.0
"""Longest unwatched time: between one HEAD sample's answer and the next sample's start, and
from the last sample to the end of measurement."""

REQUIRED_ACTIONS: Final[dict[str, frozenset[tuple[str, str]]]] = {
    "pod-delete": frozenset({("actions.pods", "delete_state_authority_pods")}),
    "node-drain": frozenset({("actions.nodes", "drain_node")}),
    "node-unavailable": frozenset({("actions.nodes", "make_node_unavailable")}),
    "node-crash": frozenset({("actions.nodes", "make_node_unavailable")}),
    "bucket-index-loss": frozenset({("harness.lab.faults.bucket_index_loss", "lose_bucket_index")}),
}
"""Each fault's own action(s) (provider module and function): only their outputs can show
the fault took effect; any other action's ``{"confirmed": true}`` proves nothing."""

__all__ = [
    "MAX_COVERAGE_GAP_MS",
    "REQUIRED_ACTIONS",
    "RULES_VERSION",
    "FaultEffect",
    "decide",
    "fault_began",
    "fault_effect",
    "workload_uids",
]


class FaultEffect(TypedDict):
    took_effect: bool
    dry_run: bool
    state_authority_pods: list[str]
    node_fault_confirmed: list[str]
    why: str


def workload_uids(fingerprint: dict[str, Any] | None) -> set[str]:
    """The UIDs of the state authority's workloads a fingerprint names."""
    return {str(w.get("uid")) for w in (fingerprint or {}).get("workloads") or [] if w.get("uid")}


def _provider(action: dict[str, Any]) -> tuple[str, str]:
    provider = action.get("provider") or {}
    return str(provider.get("module") or ""), str(provider.get("func") or "")


def _fault_actions(actions: Iterable[dict[str, Any]], fault: str) -> list[dict[str, Any]]:
    required = REQUIRED_ACTIONS.get(fault, frozenset())
    return [a for a in actions if _provider(a) in required]


def _ours(entry: Any, uids: set[str]) -> bool:
    return isinstance(entry, dict) and bool(set(entry.get("owner_uids") or []) & uids)


def _effects(action: dict[str, Any], uids: set[str]) -> tuple[list[str], list[str]]:
    """What one of the fault's own actions shows it did to the authority's workloads."""
    output = action.get("output")
    pods: list[str] = []
    confirmed: list[str] = []
    if not isinstance(output, dict) or output.get("dry_run"):
        return pods, confirmed
    namespace = str(output.get("namespace") or "")
    for pod in output.get("deleted") or []:
        if _ours(pod, uids):
            pods.append(f"{namespace}/{pod.get('name')} deleted")
    for pod in output.get("pods") or []:
        if _ours(pod, uids) and pod.get("evicted_at"):
            pods.append(f"{pod.get('pod')} evicted")
    if output.get("confirmed") is True:
        # a node fault counts only on a node that ran a pod of the authority when it began
        ran = [d.get("pod") for d in output.get("displaced_pods") or [] if _ours(d, uids)]
        if ran:
            confirmed.append(f"{output.get('confirmation')} (it ran {', '.join(map(str, ran))})")
    if output.get("took_effect") is True and output.get("kept_on_disk"):
        confirmed.append(f"bucket {output.get('bucket')} lost, its data kept on disk")
    return pods, confirmed


def fault_effect(
    fault_actions: list[dict[str, Any]], workloads: set[str], fault: str
) -> FaultEffect:
    """What the fault's own actions show they did to the state authority's workloads.

    Only the fault's required actions (:data:`REQUIRED_ACTIONS`) count; a deleted or evicted
    pod counts only when one of its controllers is one of ``workloads`` (the fingerprinted
    UIDs); a node fault only when confirmed by the node and the node ran such a pod.
    """
    own = _fault_actions(fault_actions, fault)
    dry = any(isinstance(a.get("output"), dict) and a["output"].get("dry_run") for a in own)
    pods: list[str] = []
    confirmed: list[str] = []
    for action in own:
        found_pods, found_nodes = _effects(action, workloads)
        pods += found_pods
        confirmed += found_nodes
    took = not dry and bool(pods or confirmed)
    if fault not in REQUIRED_ACTIONS:
        why = f"no rule says which action makes the fault {fault!r}"
    elif dry:
        why = "a fault action ran as a dry run"
    elif not own:
        needed = ", ".join(f"{m}.{f}" for m, f in sorted(REQUIRED_ACTIONS[fault]))
        why = f"the fault's own action ({needed}) did not run"
    elif not workloads:
        why = "the state authority's workloads are unknown (no fingerprint): nothing can be tied to them"
    elif not took:
        why = "no pod of the state authority's workloads was deleted or evicted, and no node that ran one was lost"
    else:
        why = "; ".join([*pods, *confirmed])
    return FaultEffect(
        took_effect=took,
        dry_run=dry,
        state_authority_pods=pods,
        node_fault_confirmed=confirmed,
        why=why,
    )


def fault_began(record: dict[str, Any]) -> bool:
    """Whether the run's fault action began changing something (its intent written): it
    succeeded, or failed other than by a refusal (a refusal changes nothing)."""
    for action in _fault_actions(record.get("fault_actions") or [], str(record.get("fault"))):
        if action.get("status") == "succeeded":
            return True
        error = str(action.get("error") or "")
        if "SafetyRefusal" not in error and "refused: " not in error:
            return True
    return False


def decide(
    journal: dict[str, Any],
    summary: dict[str, Any] | None,
    fault_actions: list[dict[str, Any]],
    refused: str | None,
    lease_lost: str | None = None,
    effect: FaultEffect | None = None,
    tofu: dict[str, Any] | None = None,
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
    if effect is None or not effect["took_effect"]:
        why = effect["why"] if effect is not None else "no proof that the fault happened"
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
    phantom = (tofu or {}).get("first_phantom")
    if phantom:
        # OpenTofu itself read an empty or other state: an apply then would have recreated it
        reasons.append(
            f"tofu plan at {phantom['at']:.3f} would have recreated {phantom.get('add', 0)} "
            f"resource(s) ({tofu.get('phantom') if tofu else 1} phantom plan(s)): the state it "
            "read was empty or another version"
        )
    if reasons:
        return "not-survived", reasons
    return "survived", [
        f"steady state held; fault took effect ({effect['why']}); longest outage "
        f"{summary['longest_outage_ms']:.0f} ms within budget"
    ]
