"""Chaos Toolkit actions on nodes: cordon, uncordon, drain, make unavailable, restore.

Each mutating action checks the node allowlist and ``min_ready_nodes`` and
writes its rollback intent before it changes anything; with ``dry_run`` it
returns the plan and changes nothing. Undo actions are safe to run twice.
"""

import datetime as dt
import json
import logging
import time
from typing import Any, Dict  # noqa: UP035 - chaos discover types only typing.Dict as "mapping"

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets
from kubernetes.client.rest import ApiException

from actions import nodeloss
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
    setting,
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
    and ``flywheel-chaos recover`` both call it. When the node does not come
    back in time the intent stays (for ``recover``) and this raises
    ``ActivityFailed`` naming what an operator runs by hand.
    """
    if kind == "cordon":
        keep = bool(undo.get("unschedulable"))
        _set_unschedulable(core, node, keep)
        result: dict[str, Any] = {"node": node, "unschedulable": keep}
    elif kind == "unavailable":
        result = _bring_back(core, node, undo)
    else:
        raise ActivityFailed(f"unknown rollback intent kind {kind!r} on {node}")
    clear_intents(core, node, kind, owner)
    return result


def _bring_back(core: Any, node: str, undo: dict[str, Any]) -> dict[str, Any]:
    method = str(undo.get("method") or ("lab-freeze" if undo.get("thaw_lab_node") else "taint"))
    lab = str(undo.get("lab_dir") or "")
    result: dict[str, Any] = {"node": node, "method": method}
    by_hand = f"start the node's kubelet (on {node}: sudo systemctl start {undo.get('kubelet_unit') or 'kubelet'})"
    if method == "kubelet-stop":
        pass  # the host's own timer starts the kubelet: wait for it
    elif method == "command":
        result["start"] = nodeloss.run_command(
            str(undo.get("start_command") or ""),
            node,
            float(undo.get("command_timeout_s") or 60),
            "start",
        )
        by_hand = f"run the start command by hand: {undo.get('start_command')}"
    elif method in nodeloss.LAB_METHODS or undo.get("thaw_lab_node"):
        want = "on" if method == "lab-crash" else "thaw"
        result["power"] = nodeloss.power(lab, node, want).get("state")
        result["thawed" if want == "thaw" else "restarted"] = True
        by_hand = f"flywheel-chaos lab --lab-dir {lab} node start {node}"
    if undo.get("remove_taint"):  # intents written by earlier versions
        result["taint_removed"] = _remove_unreachable_taint(core, node)
    if method != "taint":
        within = float(undo.get("ready_within_s") or 180)
        ready, seconds, last = nodeloss.wait_ready(core, node, True, within, f"{node} back")
        if not ready:
            raise ActivityFailed(
                f"node {node} is not Ready {seconds:.0f} s after the {method} fault (Ready={last}); "
                f"{by_hand}, then run flywheel-chaos recover (the intent stays until then)"
            )
        result["kubelet_ready"] = True
        result["ready_after_s"] = seconds
    if method == "kubelet-stop" and undo.get("helper_namespace"):
        result["helper_deleted"] = nodeloss.delete_helper(core, node, str(undo["helper_namespace"]))
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


def make_node_unavailable(
    name: str = "bumble",
    method: str = "",
    duration_s: float = 60.0,
    kubelet_unit: str = "kubelet",
    helper_image: str = "docker.io/library/busybox:1.36",
    helper_namespace: str = "flywheel-chaos",
    stop_command: str = "",
    start_command: str = "",
    command_timeout_s: float = 60.0,
    confirm_within_s: float = 90.0,
    ready_within_s: float = 0.0,
    silence_lab_agent: bool = False,
    lab_dir: str = "",
    min_ready_nodes: int = 1,
    dry_run: bool = False,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Make node ``name`` unavailable the way a real cluster feels it, and confirm that it is.

    ``method`` (default: ``flywheel_node_fault_method`` in the configuration,
    ``FLYWHEEL_NODE_FAULT_METHOD``, else ``kubelet-stop``):

    * ``kubelet-stop``: a privileged helper pod on the node (``hostPID``,
      ``nsenter`` into the host) schedules the kubelet's start in
      ``duration_s`` as a host timer (the dead-man switch), then stops the
      ``kubelet_unit`` (``kubelet``; k3s ``k3s``/``k3s-agent``, rke2
      ``rke2-agent``). Needs ``deploy/opt-in/node-fault.yaml`` (a namespace that
      allows privileged pods, ``helper_namespace``, and the RBAC to create them).
    * ``command``: runs ``stop_command`` (``flywheel_node_stop_command``,
      ``FLYWHEEL_NODE_STOP_COMMAND``; ``{node}`` is replaced), no shell, with
      ``command_timeout_s``; the rollback runs ``start_command``.
    * ``lab-freeze`` / ``lab-crash``: only in a lab (``lab_dir`` or
      ``FLYWHEEL_LAB_DIR``): a hung node, or a power loss of its agent and pods.
    * ``taint`` is refused: a hand-made unreachable taint on a Ready node is
      removed by the node lifecycle controller and tolerated by pods for 300 s.

    Checks the node and namespace allowlists (every pod the lost node would
    displace must be in an allowlisted namespace), ``min_ready_nodes`` and the
    lease; writes its rollback intent first; with ``dry_run`` returns the plan
    (with the pods it would displace) and changes nothing. Then confirms the
    fault: the node's Ready condition leaves True within ``confirm_within_s``
    (for ``lab-crash``, the processes are gone). Returns ``{"node", "method",
    "dry_run", "confirmed", "confirmation", "displaced", ...}``; an unconfirmed
    fault makes the run's verdict ``aborted``, never survived.
    """
    lab = lab_dir or setting(configuration, "flywheel_lab_dir", "FLYWHEEL_LAB_DIR")
    chosen = method or setting(
        configuration, "flywheel_node_fault_method", "FLYWHEEL_NODE_FAULT_METHOD"
    )
    if not chosen:
        chosen = "lab-freeze" if silence_lab_agent and lab else "kubelet-stop"
    duration = float(duration_s)
    if chosen == "taint":
        raise SafetyRefusal(
            "refused: method 'taint' injects nothing on a Ready node: the node lifecycle "
            "controller removes a hand-made unreachable taint within one monitor period and pods "
            "tolerate it for 300 s (hint: use kubelet-stop, command, or a lab method)"
        )
    if chosen not in nodeloss.METHODS:
        raise SafetyRefusal(
            f"refused: unknown node fault method {chosen!r} (hint: one of {', '.join(nodeloss.METHODS)})"
        )
    if chosen in nodeloss.LAB_METHODS and not lab:
        raise SafetyRefusal(
            f"refused: {chosen} freezes or kills lab processes and there is no lab here "
            "(FLYWHEEL_LAB_DIR is unset) (hint: on a real cluster use kubelet-stop or command)"
        )
    stop = stop_command or setting(
        configuration, "flywheel_node_stop_command", "FLYWHEEL_NODE_STOP_COMMAND"
    )
    start = start_command or setting(
        configuration, "flywheel_node_start_command", "FLYWHEEL_NODE_START_COMMAND"
    )
    if chosen == "command" and not (stop and start):
        raise SafetyRefusal(
            "refused: method 'command' needs both a stop and a start command (hint: set "
            "FLYWHEEL_NODE_STOP_COMMAND and FLYWHEEL_NODE_START_COMMAND; {node} is the node)"
        )
    check_node_allowed(name, configuration)
    core = core_api(configuration)
    read_node(core, name)
    check_min_ready(core, name, int(min_ready_nodes))
    displaced = [
        f"{p.metadata.namespace}/{p.metadata.name}"
        for p in nodeloss.displaced_pods(core, name, helper_namespace)
    ]
    for namespace in sorted({d.split("/", 1)[0] for d in displaced}):
        check_namespace_allowed(namespace, configuration)
    back_within = float(ready_within_s) or duration + 120.0
    plan: dict[str, Any] = {
        "node": name,
        "method": chosen,
        "duration_s": duration if chosen == "kubelet-stop" else None,
        "displaced": displaced,
    }
    if dry_run:
        return {**plan, "dry_run": True, "confirmed": False}
    require_lease(configuration)
    write_intent(
        core,
        "unavailable",
        name,
        {
            "method": chosen,
            "lab_dir": lab,
            "start_command": start if chosen == "command" else "",
            "command_timeout_s": float(command_timeout_s),
            "kubelet_unit": kubelet_unit,
            "helper_namespace": helper_namespace if chosen == "kubelet-stop" else "",
            "ready_within_s": back_within,
        },
    )
    injected: dict[str, Any] = {}
    if chosen == "kubelet-stop":
        try:
            injected["helper_pod"] = nodeloss.start_helper(
                core, name, helper_namespace, helper_image, kubelet_unit, duration
            )
        except ActivityFailed as exc:  # nothing was injected: the run proves nothing
            logger.warning("%s", exc)
            return {
                **plan,
                "dry_run": False,
                "confirmed": False,
                "confirmation": f"not injected: {exc}",
            }
    elif chosen == "command":
        injected["stop"] = nodeloss.run_command(stop, name, float(command_timeout_s), "stop")
    else:
        state = nodeloss.power(lab, name, "freeze" if chosen == "lab-freeze" else "off")
        injected["power"] = state.get("state")
        injected["killed_pids"] = state.get("killed", [])
    confirmed, seconds, last = nodeloss.wait_ready(
        core, name, False, float(confirm_within_s), f"{name} lost"
    )
    confirmation = f"{name} Ready={last} after {seconds:.1f} s"
    if chosen == "lab-crash" and injected.get("power") == "off":
        confirmed = True
        confirmation = f"{name}'s agent and pods killed ({len(injected['killed_pids'])} process group(s)); {confirmation}"
    if not confirmed:
        logger.warning(
            "%s did not take effect on %s: Ready is still %s after %.0f s",
            chosen,
            name,
            last,
            seconds,
        )
    return {
        **plan,
        **injected,
        "dry_run": False,
        "confirmed": confirmed,
        "confirmation": confirmation
        if confirmed
        else f"not confirmed: {name} still Ready={last} after {seconds:.1f} s",
    }


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
    """Undo ``make_node_unavailable`` of this run and wait until the node is Ready again.

    kubelet-stop: waits for the host timer to start the kubelet, then deletes
    the helper pod; command: runs the start command; lab methods: thaws or
    powers on the lab node. When the node is not Ready by the intent's
    deadline it fails loudly with the command an operator runs by hand, and
    the intent stays for ``flywheel-chaos recover``. Safe to run twice.
    Returns ``{"node", "method", "kubelet_ready", ...}``.
    """
    return _undo_activity(name, "unavailable", "this run made nothing unavailable", configuration)
