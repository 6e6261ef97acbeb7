"""Chaos Toolkit actions on nodes: cordon, uncordon, drain, make unavailable, restore.

Each mutating action checks the node allowlist and ``min_ready_nodes`` and
writes its rollback intent before it changes anything; with ``dry_run`` it
returns the plan and changes nothing. Undo actions are safe to run twice.
"""

import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict  # noqa: UP035 - chaos discover types only typing.Dict as "mapping"

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets
from kubernetes.client.rest import ApiException

from actions.cluster import (
    API_TIMEOUT,
    SafetyRefusal,
    check_min_ready,
    check_namespace_allowed,
    check_node_allowed,
    clear_intents,
    core_api,
    node_intents,
    read_node,
    refused_run,
    require_lease,
    run_id,
    wait_pods_gone,
    write_intent,
)

Result = Dict[str, Any]  # noqa: UP006

__all__ = [
    "cordon_node",
    "drain_node",
    "make_node_unavailable",
    "restore_node",
    "uncordon_node",
]

logger = logging.getLogger("flywheel_chaos.actions")

UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _set_unschedulable(core: Any, node: str, value: bool) -> None:
    core.patch_node(node, {"spec": {"unschedulable": value or None}}, _request_timeout=API_TIMEOUT)


def cordon_node(
    name: str = "bumble",
    min_ready_nodes: int = 1,
    dry_run: bool = False,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Mark node ``name`` unschedulable, after writing how to undo it.

    Refuses (``ActivityFailed``) when the node is not in the allowlist, does
    not exist, or fewer than ``min_ready_nodes`` other nodes are Ready and
    schedulable. Returns ``{"node", "was_unschedulable", "dry_run"}``.
    """
    check_node_allowed(name, configuration)
    core = core_api(configuration)
    node = read_node(core, name)
    check_min_ready(core, name, min_ready_nodes)
    was = bool(node.spec.unschedulable)
    if not dry_run:
        require_lease(configuration)
    if dry_run:
        return {"node": name, "was_unschedulable": was, "dry_run": True, "plan": [f"cordon {name}"]}
    write_intent(core, "cordon", name, {"unschedulable": was})
    _set_unschedulable(core, name, True)
    return {"node": name, "was_unschedulable": was, "dry_run": False}


def uncordon_node(
    name: str = "bumble",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Make node ``name`` schedulable again, as it was before the harness cordoned it.

    When the recorded intent says the node was already cordoned before, it is
    left cordoned. Safe to run twice. Returns ``{"node", "unschedulable"}``.
    """
    return _undo_activity(name, "cordon", "this run cordoned nothing", configuration)


def undo_intent(
    core: Any, kind: str, node: str, undo: dict[str, Any], owner: str | None
) -> dict[str, Any]:
    """Undo one recorded change (``kind`` with its ``undo`` record) and forget run ``owner``'s intent.

    The one place that knows how each fault is undone: the rollback actions
    and ``flywheel-chaos recover`` both call it.
    """
    if kind == "cordon":
        keep = bool(undo.get("unschedulable"))
        _set_unschedulable(core, node, keep)
        result: dict[str, Any] = {"node": node, "unschedulable": keep}
    elif kind == "unavailable":
        thawed = bool(undo.get("thaw_lab_node") and undo.get("lab_dir"))
        if thawed:
            _lab_node("start", node, str(undo["lab_dir"]))
        removed = bool(undo.get("remove_taint")) and _remove_unreachable_taint(core, node)
        result = {"node": node, "thawed": thawed, "taint_removed": removed}
    else:
        raise ActivityFailed(f"unknown rollback intent kind {kind!r} on {node}")
    clear_intents(core, node, kind, owner)
    return result


def _undo_activity(name: str, kind: str, nothing: str, configuration: Configuration) -> Result:
    """Undo what *this run* changed on ``name``, from its own intents; nothing else.

    A rollback needs no lease (a run that lost its lease still undoes its own
    change) but never touches what this run did not change: without a run id,
    or without an intent of this run, it does nothing and says so.
    """
    owner = run_id()
    if owner is None:
        return {
            "node": name,
            "skipped": "no run: nothing of this run to undo (flywheel-chaos recover undoes "
            "what dead runs left)",
        }
    check_node_allowed(name, configuration)
    core = core_api(configuration)
    read_node(core, name)
    intents = [i for i in node_intents(core, name, owner) if i.get("kind") == kind]
    if not intents:
        reason = refused_run()
        return {"node": name, "skipped": f"{nothing}{f' ({reason})' if reason else ''}"}
    # the oldest intent holds the state before this run touched the node
    return undo_intent(core, kind, name, intents[0]["undo"], owner)


def _owner_kind(pod: Any) -> str | None:
    for owner in pod.metadata.owner_references or []:
        if owner.controller:
            return str(owner.kind)
    return None


def _is_mirror(pod: Any) -> bool:
    return "kubernetes.io/config.mirror" in (pod.metadata.annotations or {})


def _has_empty_dir(pod: Any) -> bool:
    return any(v.empty_dir is not None for v in (pod.spec.volumes or []))


def _budget_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return str(exc.reason)
    causes = (body.get("details") or {}).get("causes") or []
    messages = [c.get("message", "") for c in causes if c.get("message")]
    return "; ".join(messages) or str(body.get("message", exc.reason))


def _plan_drain(
    core: Any, node: str, empty_dir: str, unmanaged: str, configuration: Any
) -> tuple[list[Any], list[dict[str, str]]]:
    pods = core.list_pod_for_all_namespaces(
        field_selector=f"spec.nodeName={node}", _request_timeout=API_TIMEOUT
    ).items
    to_evict, skipped = [], []
    for pod in pods:
        ident = f"{pod.metadata.namespace}/{pod.metadata.name}"
        if pod.metadata.deletion_timestamp is not None:
            skipped.append({"pod": ident, "reason": "already terminating"})
            continue
        if _is_mirror(pod):
            skipped.append({"pod": ident, "reason": "mirror pod"})
            continue
        if _owner_kind(pod) == "DaemonSet":
            skipped.append({"pod": ident, "reason": "DaemonSet pod"})
            continue
        if pod.status and pod.status.phase in ("Succeeded", "Failed"):
            skipped.append({"pod": ident, "reason": f"finished ({pod.status.phase})"})
            continue
        if _owner_kind(pod) is None and unmanaged != "evict":
            raise SafetyRefusal(
                f"refused: pod {ident} on {node} has no controller and would not come back "
                "(hint: pass unmanaged='evict' to evict it anyway)"
            )
        if _has_empty_dir(pod) and empty_dir != "evict":
            raise SafetyRefusal(
                f"refused: pod {ident} on {node} uses emptyDir data that eviction deletes "
                "(hint: pass empty_dir='evict' to accept losing it)"
            )
        check_namespace_allowed(pod.metadata.namespace, configuration)
        to_evict.append(pod)
    return to_evict, skipped


def drain_node(
    name: str = "bumble",
    timeout_s: float = 120.0,
    retry_delay_s: float = 0.5,
    max_retry_delay_s: float = 5.0,
    empty_dir: str = "refuse",
    unmanaged: str = "refuse",
    min_ready_nodes: int = 1,
    leave_cordoned_on_failure: bool = False,
    dry_run: bool = False,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Drain node ``name`` the way ``kubectl drain`` does: cordon, then evict its pods.

    Evicts through the Eviction API (never a plain delete, never forced),
    retrying PodDisruptionBudget refusals (429) with backoff from
    ``retry_delay_s`` doubling to ``max_retry_delay_s`` until ``timeout_s``;
    skips DaemonSet, mirror and finished pods; pods with emptyDir volumes or
    without a controller are refused before anything changes unless
    ``empty_dir``/``unmanaged`` is ``"evict"``; waits for evicted pods to go
    by watching. Returns the plan, each pod's eviction and disappearance time
    and the duration. Raises ``ActivityFailed`` when refused (allowlist,
    missing node, too few Ready nodes, a policy) or when the drain does not
    finish in time (naming the budget that blocked it); then the node is left
    schedulable again unless ``leave_cordoned_on_failure``.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    check_node_allowed(name, configuration)
    for policy, value in (("empty_dir", empty_dir), ("unmanaged", unmanaged)):
        if value not in ("refuse", "evict"):
            raise SafetyRefusal(f"refused: {policy} must be 'refuse' or 'evict', not {value!r}")
    core = core_api(configuration)
    node = read_node(core, name)
    check_min_ready(core, name, min_ready_nodes)
    to_evict, skipped = _plan_drain(core, name, empty_dir, unmanaged, configuration)
    plan = {
        "node": name,
        "cordon": True,
        "evict": [f"{p.metadata.namespace}/{p.metadata.name}" for p in to_evict],
        "skip": skipped,
    }
    if dry_run:
        return {**plan, "dry_run": True}
    require_lease(configuration)
    was = bool(node.spec.unschedulable)
    write_intent(core, "cordon", name, {"unschedulable": was})
    try:
        _set_unschedulable(core, name, True)
        cordoned_at = _now()
        results = _evict_all(core, to_evict, deadline, retry_delay_s, max_retry_delay_s)
        _wait_gone(core, name, results, deadline)
    except BaseException as exc:  # KeyboardInterrupt too: never leave the node half-drained
        if not leave_cordoned_on_failure:
            try:
                _set_unschedulable(core, name, was)
                clear_intents(core, name, "cordon", run_id())
                logger.warning("drain of %s failed; node restored (unschedulable=%s)", name, was)
            except Exception as restore_exc:  # the intent stays for recover
                logger.error(
                    "could not restore %s: %s; run flywheel-chaos recover", name, restore_exc
                )
        if isinstance(exc, ActivityFailed):
            raise
        if isinstance(exc, Exception):
            raise ActivityFailed(f"drain of {name} failed: {exc}") from exc
        raise
    return {
        **plan,
        "dry_run": False,
        "cordoned_at": cordoned_at.isoformat(),
        "pods": results,
        "duration_s": round(time.monotonic() - started, 3),
    }


def _evict_all(
    core: Any, pods: list[Any], deadline: float, first_delay: float, max_delay: float
) -> list[dict[str, Any]]:
    results = []
    for pod in pods:
        ident = f"{pod.metadata.namespace}/{pod.metadata.name}"
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod.metadata.name, "namespace": pod.metadata.namespace},
        }
        attempt, delay = 0, first_delay
        while True:
            attempt += 1
            try:
                core.create_namespaced_pod_eviction(
                    pod.metadata.name, pod.metadata.namespace, body, _request_timeout=API_TIMEOUT
                )
                break
            except ApiException as exc:
                if exc.status == 404:
                    break  # already gone
                if exc.status != 429:
                    raise ActivityFailed(
                        f"eviction of {ident} failed: {exc.status} {exc.reason}: {_budget_message(exc)}"
                    ) from exc
                message = _budget_message(exc)
                logger.info("eviction of %s: attempt %d refused (429): %s", ident, attempt, message)
                if time.monotonic() + delay > deadline:
                    raise ActivityFailed(
                        f"drain did not finish: eviction of {ident} was refused {attempt} time(s) "
                        f"until the deadline: {message} (hint: the PodDisruptionBudget blocks it; "
                        "scale up or relax the budget)"
                    ) from exc
                time.sleep(delay)
                delay = min(max_delay, delay * 2)
        results.append(
            {
                "pod": ident,
                "uid": pod.metadata.uid,
                "evicted_at": _now().isoformat(),
                "attempts": attempt,
                "gone_at": None,
            }
        )
    return results


def _wait_gone(core: Any, node: str, results: list[dict[str, Any]], deadline: float) -> None:
    gone = wait_pods_gone(
        core, [r["uid"] for r in results], deadline, field_selector=f"spec.nodeName={node}"
    )
    for result in results:
        if result["uid"] in gone:
            result["gone_at"] = dt.datetime.fromtimestamp(gone[result["uid"]], dt.UTC).isoformat()
    left = [r["pod"] for r in results if r["uid"] not in gone]
    if left:
        raise ActivityFailed(
            f"drain did not finish: still waiting for {', '.join(left)} to go away"
        )


def _lab_cli() -> list[str] | None:
    beside = Path(sys.executable).parent / "flywheel-chaos"
    found = str(beside) if beside.exists() else shutil.which("flywheel-chaos")
    return [found] if found else None


def _lab_node(action: str, name: str, lab_dir: str) -> None:
    cli = _lab_cli()
    if cli is None:
        raise ActivityFailed("cannot silence a lab node: flywheel-chaos is not installed")
    result = subprocess.run(
        [*cli, "lab", "--lab-dir", lab_dir, "node", action, name],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise ActivityFailed(f"lab node {action} {name} failed: {result.stderr.strip()[-500:]}")


def make_node_unavailable(
    name: str = "bumble",
    silence_lab_agent: bool = False,
    lab_dir: str = "",
    min_ready_nodes: int = 1,
    dry_run: bool = False,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Make node ``name`` unavailable as the node lifecycle controller sees a lost node.

    Applies the ``node.kubernetes.io/unreachable:NoExecute`` taint; in the
    lab, with ``silence_lab_agent``, also freezes the node's agent and pods
    (no heartbeats, no answers), so the controller itself marks it NotReady;
    outside the lab (no ``FLYWHEEL_LAB_DIR``) ``silence_lab_agent`` does nothing.
    Writes the rollback intent first. Returns ``{"node", "tainted",
    "silenced", "dry_run"}``. Raises ``ActivityFailed`` when refused.
    """
    check_node_allowed(name, configuration)
    core = core_api(configuration)
    node = read_node(core, name)
    check_min_ready(core, name, min_ready_nodes)
    lab = (
        lab_dir
        or (configuration or {}).get("flywheel_lab_dir")
        or os.environ.get("FLYWHEEL_LAB_DIR", "")
    )
    # outside the lab there is no agent to silence: the taint is the whole fault
    silence_lab_agent = bool(silence_lab_agent and lab)
    taints = list(node.spec.taints or [])
    had_taint = any(t.key == UNREACHABLE_TAINT and t.effect == "NoExecute" for t in taints)
    plan = {
        "node": name,
        "taint": f"{UNREACHABLE_TAINT}:NoExecute",
        "silence_lab_agent": silence_lab_agent,
    }
    if dry_run:
        return {**plan, "dry_run": True}
    require_lease(configuration)
    write_intent(
        core,
        "unavailable",
        name,
        {"remove_taint": not had_taint, "thaw_lab_node": bool(silence_lab_agent), "lab_dir": lab},
    )
    if not had_taint:
        new = [t.to_dict() for t in taints] + [
            {"key": UNREACHABLE_TAINT, "effect": "NoExecute", "time_added": _now()}
        ]
        core.patch_node(
            name, {"spec": {"taints": [_taint_body(t) for t in new]}}, _request_timeout=API_TIMEOUT
        )
    if silence_lab_agent:
        _lab_node("stop", name, lab)
    return {**plan, "tainted": True, "silenced": silence_lab_agent, "dry_run": False}


def _taint_body(taint: dict[str, Any]) -> dict[str, Any]:
    body = {"key": taint["key"], "effect": taint["effect"]}
    if taint.get("value"):
        body["value"] = taint["value"]
    added = taint.get("time_added") or taint.get("timeAdded")
    if added:
        body["timeAdded"] = added.isoformat() if hasattr(added, "isoformat") else str(added)
    return body


def _remove_unreachable_taint(core: Any, name: str) -> bool:
    node = core.read_node(name, _request_timeout=API_TIMEOUT)
    taints = [t.to_dict() for t in node.spec.taints or []]
    kept = [t for t in taints if not (t["key"] == UNREACHABLE_TAINT and t["effect"] == "NoExecute")]
    if len(kept) == len(taints):
        return False
    core.patch_node(
        name,
        {"spec": {"taints": [_taint_body(t) for t in kept] or None}},
        _request_timeout=API_TIMEOUT,
    )
    return True


def restore_node(
    name: str = "bumble",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Undo ``make_node_unavailable``: thaw a silenced lab node and remove the taint it added.

    Uses the recorded intent; safe to run twice. Returns ``{"node",
    "thawed", "taint_removed"}``.
    """
    return _undo_activity(name, "unavailable", "this run made nothing unavailable", configuration)
