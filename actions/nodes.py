"""Chaos Toolkit actions on nodes: cordon, uncordon, drain, make unavailable, restore.

Each mutating action checks the node allowlist and ``min_ready_nodes`` and
writes its rollback intent before it changes anything; with ``dry_run`` it
returns the plan and changes nothing. Undo actions are safe to run twice.
"""

import datetime as dt
import logging
import time
from typing import Any

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from flywheel_chaos import nodefault
from flywheel_chaos.kube.client import core_api
from flywheel_chaos.kube.drain import check_policies, evict_all, plan_drain, wait_evicted_gone
from flywheel_chaos.kube.intents import clear_intents, node_intents, write_intent
from flywheel_chaos.kube.nodes import set_unschedulable
from flywheel_chaos.kube.pods import Owned, Owners
from flywheel_chaos.kube.safety import (
    LeaseGuard,
    check_min_ready,
    check_namespace_allowed,
    check_node_allowed,
    read_node,
    refused_run,
    require_lease,
    run_id,
)
from flywheel_chaos.results import Result
from flywheel_chaos.undo import undo_intent

__all__ = [
    "cordon_node",
    "drain_node",
    "make_node_unavailable",
    "restore_node",
    "uncordon_node",
]

logger = logging.getLogger("flywheel_chaos.actions")


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
    if dry_run:
        return {"node": name, "was_unschedulable": was, "dry_run": True, "plan": [f"cordon {name}"]}
    require_lease(configuration)
    write_intent(core, "cordon", name, {"unschedulable": was})
    set_unschedulable(core, name, True)
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
    check_policies(empty_dir=empty_dir, unmanaged=unmanaged)
    core = core_api(configuration)
    node = read_node(core, name)
    check_min_ready(core, name, min_ready_nodes)
    to_evict, skipped = plan_drain(core, name, empty_dir, unmanaged, configuration)
    plan = {
        "node": name,
        "cordon": True,
        "evict": [f"{p.metadata.namespace}/{p.metadata.name}" for p in to_evict],
        "skip": skipped,
    }
    if dry_run:
        return {**plan, "dry_run": True}
    require_lease(configuration)
    lease = LeaseGuard(configuration)  # re-checked between the drain's steps
    was = bool(node.spec.unschedulable)
    write_intent(core, "cordon", name, {"unschedulable": was})
    try:
        set_unschedulable(core, name, True)
        cordoned_at = dt.datetime.now(dt.UTC)
        results = evict_all(core, to_evict, deadline, retry_delay_s, max_retry_delay_s, lease)
        wait_evicted_gone(core, name, results, deadline, lease)
    except BaseException as exc:  # KeyboardInterrupt too: never leave the node half-drained
        if not leave_cordoned_on_failure:
            _restore_after_failed_drain(core, name, was)
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


def _restore_after_failed_drain(core: Any, name: str, was: bool) -> None:
    try:
        set_unschedulable(core, name, was)
        clear_intents(core, name, "cordon", run_id())
        logger.warning("drain of %s failed; node restored (unschedulable=%s)", name, was)
    except Exception as restore_exc:  # the intent stays for recover
        logger.error("could not restore %s: %s; run flywheel-chaos recover", name, restore_exc)


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
    min_ready_nodes: int = 1,
    dry_run: bool = False,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Make node ``name`` unavailable the way a real cluster feels it, and confirm that it is.

    ``method`` (default: ``flywheel_node_fault_method`` in the configuration,
    ``FLYWHEEL_NODE_FAULT_METHOD``, else ``kubelet-stop``):

    * ``kubelet-stop``: a privileged helper pod on the node (``hostPID``, ``nsenter``)
      schedules the kubelet's start in ``duration_s`` as a host timer (the dead-man
      switch), then stops ``kubelet_unit`` (k3s: ``k3s``/``k3s-agent``, rke2:
      ``rke2-agent``). Needs ``deploy/components/node-fault`` (``helper_namespace``).
    * ``command``: runs ``stop_command`` (``flywheel_node_stop_command``,
      ``FLYWHEEL_NODE_STOP_COMMAND``; ``{node}`` is replaced), no shell, with
      ``command_timeout_s``; the rollback runs ``start_command``.
    * ``lab-freeze`` / ``lab-crash``: only in a lab (``FLYWHEEL_LAB_DIR``), reached
      through the lab's power contract: a hung node, or a power loss of its agent and pods.
    * ``taint`` is refused: the node lifecycle controller removes it at once.

    Checks the node and namespace allowlists (of every pod it would displace),
    ``min_ready_nodes`` and the lease; writes its rollback intent first; with
    ``dry_run`` returns the plan and changes nothing. Confirms the fault: Ready
    leaves True within ``confirm_within_s`` (``lab-crash``: the processes are
    gone). Returns ``{"node", "method", "dry_run", "confirmed", "confirmation",
    "displaced", ...}``; unconfirmed, the run's verdict is ``aborted``.
    """
    fault = nodefault.resolve(method, stop_command, start_command, configuration)
    duration = float(duration_s)
    check_node_allowed(name, configuration)
    core = core_api(configuration)
    owned = _checked_displacement(core, name, helper_namespace, min_ready_nodes, configuration)
    chosen = fault["method"]
    kubelet_stop = duration if chosen == "kubelet-stop" else None
    displaced = [d["pod"] for d in owned]
    plan: dict[str, Any] = {"node": name, "method": chosen, "duration_s": kubelet_stop}
    plan.update(displaced=displaced, displaced_pods=owned)
    if dry_run:
        return {**plan, "dry_run": True, "confirmed": False}
    require_lease(configuration)
    helper = nodefault.Helper(helper_namespace, helper_image, kubelet_unit)
    undo = nodefault.undo_record(
        fault, helper, float(command_timeout_s), float(ready_within_s) or duration + 120.0
    )
    write_intent(core, "unavailable", name, undo)
    try:
        injected = nodefault.inject(core, fault, name, helper, duration, float(command_timeout_s))
    except ActivityFailed as exc:
        if chosen != "kubelet-stop":
            raise
        logger.warning("%s", exc)  # nothing was injected: the run proves nothing
        return {
            **plan,
            "dry_run": False,
            "confirmed": False,
            "confirmation": f"not injected: {exc}",
        }
    confirmed, confirmation = nodefault.confirm(
        core, name, chosen, injected, float(confirm_within_s)
    )
    outcome = {"dry_run": False, "confirmed": confirmed, "confirmation": confirmation}
    return {**plan, **injected, **outcome}


def _checked_displacement(
    core: Any, name: str, helper_namespace: str, min_ready_nodes: int, configuration: Configuration
) -> list[Owned]:
    """The pods losing ``name`` displaces, once the node, its allowlists and the nodes that
    would stay Ready are checked (every displaced pod's namespace must be allowlisted)."""
    read_node(core, name)
    check_min_ready(core, name, int(min_ready_nodes))
    owners = Owners(core.api_client)
    displaced = [owners.owned(p) for p in nodefault.displaced_pods(core, name, helper_namespace)]
    for namespace in sorted({d["pod"].split("/", 1)[0] for d in displaced}):
        check_namespace_allowed(namespace, configuration)
    return displaced


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
