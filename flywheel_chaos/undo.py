"""How every recorded change is undone: the one place the rollbacks and ``recover`` share."""

from __future__ import annotations

from typing import Any

from chaoslib.exceptions import ActivityFailed
from kubernetes import client

from flywheel_chaos.kube.intents import clear_intents
from flywheel_chaos.kube.nodes import set_unschedulable
from flywheel_chaos.nodefault import bring_back

__all__ = ["undo_intent"]


def undo_intent(
    core: client.CoreV1Api, kind: str, node: str, undo: dict[str, Any], owner: str | None
) -> dict[str, Any]:
    """Undo one recorded change (``kind`` with its ``undo`` record) and forget run ``owner``'s intent.

    When the node does not come back in time the intent stays (for ``recover``) and this
    raises ``ActivityFailed`` naming what an operator runs by hand.
    """
    if kind == "cordon":
        keep = bool(undo.get("unschedulable"))
        set_unschedulable(core, node, keep)
        result: dict[str, Any] = {"node": node, "unschedulable": keep}
    elif kind == "unavailable":
        result = bring_back(core, node, undo)
    else:
        raise ActivityFailed(f"unknown rollback intent kind {kind!r} on {node}")
    clear_intents(core, node, kind, owner)
    return result
