"""Rollback intents: what a fault will change, how to undo it, and whose change it is.

Written *before* the change, to a local file (``FLYWHEEL_STATE_DIR/intents``) and as an
annotation on the node (a conditional update: a concurrent writer is never overwritten).
A run undoes and forgets only its own intents; ``flywheel-chaos recover`` undoes what dead
runs left. An annotation that cannot be read is never taken for "no intents": the action
refuses, naming it, so that another run's undo record is not overwritten.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Literal, TypedDict

from kubernetes import client
from kubernetes.client.rest import ApiException

from flywheel_chaos import settings
from flywheel_chaos.kube.client import API_TIMEOUT
from flywheel_chaos.kube.safety import SafetyRefusal, run_id

__all__ = [
    "INTENT_ANNOTATION",
    "Intent",
    "IntentKind",
    "annotation_intents",
    "clear_intents",
    "forget_intent_files",
    "intent_dir",
    "node_intents",
    "read_intents",
    "write_intent",
]

logger = logging.getLogger("flywheel_chaos.kube")

INTENT_ANNOTATION: Final = "flywheel-chaos.io/rollback-intent"
INTENT_UPDATE_ATTEMPTS: Final = 5
"""Attempts of a conditional annotation update that lost a race (409) before giving up."""

IntentKind = Literal["cordon", "unavailable"]


class Intent(TypedDict):
    """One recorded change (in the node's annotation list and in a local file)."""

    id: str
    kind: IntentKind
    node: str
    undo: dict[str, Any]
    """How to undo it: ``{"unschedulable"}`` for a cordon, the method's data for a node loss."""
    created: str
    by: str
    """``host/pid`` of the process that wrote it."""
    run_id: str | None


def intent_dir() -> Path:
    directory = settings.state_dir() / "intents"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def annotation_intents(node_obj: Any) -> list[Intent]:
    """The intents on a node object; refuses (naming it) when the annotation is unreadable."""
    raw = (node_obj.metadata.annotations or {}).get(INTENT_ANNOTATION)
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(i, dict) for i in value):
        raise SafetyRefusal(
            f"refused: node {node_obj.metadata.name}'s annotation {INTENT_ANNOTATION} is not a "
            f"list of intents ({raw[:80]!r}): another run's undo record may be in it (hint: "
            "read it, undo by hand what it names, then remove the annotation)"
        )
    return value


def _update_intents(
    core: client.CoreV1Api, node: str, change: Callable[[list[Intent]], list[Intent] | None]
) -> None:
    """Apply ``change`` to the node's intent annotation as a conditional update.

    ``change`` gets the current intents and returns the new list (None: no change). The
    patch carries the node's resourceVersion, so a concurrent writer is never overwritten:
    on 409 the node is read again and ``change`` applied anew, up to
    :data:`INTENT_UPDATE_ATTEMPTS` attempts, each logged.
    """
    for attempt in range(1, INTENT_UPDATE_ATTEMPTS + 1):
        node_obj = core.read_node(node, _request_timeout=API_TIMEOUT)
        wanted = change(annotation_intents(node_obj))
        if wanted is None:
            return
        value: str | None = json.dumps(wanted) if wanted else None
        try:
            core.patch_node(
                node,
                {
                    "metadata": {
                        "annotations": {INTENT_ANNOTATION: value},
                        "resourceVersion": node_obj.metadata.resource_version,
                    }
                },
                _request_timeout=API_TIMEOUT,
            )
            return
        except ApiException as exc:
            if exc.status != 409 or attempt == INTENT_UPDATE_ATTEMPTS:
                raise
            logger.info(
                "intent annotation on %s: attempt %d/%d lost a race (409); reading again",
                node,
                attempt,
                INTENT_UPDATE_ATTEMPTS,
            )


def write_intent(
    core: client.CoreV1Api, kind: IntentKind, node: str, undo: dict[str, Any]
) -> Intent:
    """Record, before mutating ``node``, what will change, how to undo it and whose change it is.

    Refuses (:class:`SafetyRefusal`) when another run's intent is on the node: its change is
    not undone yet, and this run would take the state it left for the original one.
    """
    owner = run_id()
    intent: Intent = {
        "id": uuid.uuid4().hex[:12],
        "kind": kind,
        "node": node,
        "undo": undo,
        "created": dt.datetime.now(dt.UTC).isoformat(),
        "by": f"{socket.gethostname()}/{os.getpid()}",
        "run_id": owner,
    }

    def add(existing: list[Intent]) -> list[Intent]:
        foreign = [i for i in existing if i.get("run_id") != owner]
        if foreign:
            first = foreign[0]
            raise SafetyRefusal(
                f"refused: node {node} carries an undone {first.get('kind')} of run "
                f"{first.get('run_id')} ({first.get('by')}, {first.get('created')}) "
                "(hint: wait for that run; if it died, run flywheel-chaos recover)"
            )
        return [*existing, intent]

    path = intent_dir() / f"{intent['id']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(intent, indent=2))
    tmp.replace(path)
    try:
        _update_intents(core, node, add)
    except BaseException:
        path.unlink(missing_ok=True)  # nothing was changed: nothing to undo
        raise
    return intent


def read_intents() -> list[Intent]:
    """The local intent files (every run's, oldest name first)."""
    intents: list[Intent] = []
    for path in sorted(intent_dir().glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            intents.append(json.loads(path.read_text()))
    return intents


def node_intents(core: client.CoreV1Api, node: str, owner: str | None) -> list[Intent]:
    """Intents of run ``owner`` recorded on ``node`` (oldest first)."""
    intents = annotation_intents(core.read_node(node, _request_timeout=API_TIMEOUT))
    return [i for i in intents if i.get("run_id") == owner]


def forget_intent_files(node: str, kind: str, owner: str | None) -> None:
    """Remove the local intent files of run ``owner`` for ``kind`` on ``node``."""
    for path in intent_dir().glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            intent = json.loads(path.read_text())
            if (
                intent.get("node") == node
                and intent.get("kind") == kind
                and intent.get("run_id") == owner
            ):
                path.unlink()


def clear_intents(core: client.CoreV1Api, node: str, kind: str, owner: str | None) -> None:
    """Forget run ``owner``'s intents of ``kind`` on ``node`` (files and annotation): undone.

    Other runs' intents stay, for their own rollback or ``recover``.
    """
    forget_intent_files(node, kind, owner)

    def drop(current: list[Intent]) -> list[Intent] | None:
        remaining = [i for i in current if not (i.get("kind") == kind and i.get("run_id") == owner)]
        return None if len(remaining) == len(current) else remaining

    try:
        _update_intents(core, node, drop)
    except ApiException as exc:
        if exc.status != 404:
            raise
