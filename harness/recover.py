"""``flywheel-chaos recover``: undo every fault whose rollback did not run.

Sources: the intent files in ``FLYWHEEL_STATE_DIR/intents`` and the
``flywheel-chaos.io/rollback-intent`` annotations on nodes (written before
each mutation, removed when it is undone). A cluster lease left by a dead
local run is released too. Safe to run twice: a second run finds nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from actions.cluster import (
    API_TIMEOUT,
    INTENT_ANNOTATION,
    api_client,
    forget_intent_files,
    read_intents,
)
from actions.nodes import undo_intent
from harness.controls.safety import LEASE_NAME
from harness.processes import pid_alive


def _describe(result: dict[str, Any]) -> str:
    node = result["node"]
    if "unschedulable" in result:
        return f"{node}: {'left cordoned (it was before)' if result['unschedulable'] else 'uncordoned'}"
    done = [
        text
        for key, text in (
            ("thawed", "lab node resumed"),
            ("taint_removed", "unreachable taint removed"),
        )
        if result.get(key)
    ]
    return f"{node}: {', '.join(done) or 'nothing left to undo'}"


def recover(
    configuration: dict[str, Any] | None = None, lease_namespace: str = "kube-system"
) -> list[str]:
    """Undo every recorded intent; returns one line per action taken."""
    api = api_client(configuration)
    core = client.CoreV1Api(api)
    intents = {i["id"]: i for i in read_intents()}
    for node in core.list_node(_request_timeout=API_TIMEOUT).items:
        raw = (node.metadata.annotations or {}).get(INTENT_ANNOTATION)
        with contextlib.suppress(ValueError, TypeError):
            for intent in json.loads(raw) if raw else []:
                intents.setdefault(intent["id"], intent)
    done: list[str] = []
    seen: set[tuple[str, str]] = set()
    # the oldest intent of a kind on a node holds the state before the harness touched it
    for intent in sorted(intents.values(), key=lambda i: i.get("created", "")):
        key = (intent["node"], intent["kind"])
        if key in seen:
            continue
        seen.add(key)
        try:
            done.append(
                _describe(
                    undo_intent(core, intent["kind"], intent["node"], intent.get("undo") or {})
                )
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            forget_intent_files(intent["node"], intent["kind"])
            done.append(f"{intent['node']}: node is gone")
    done.extend(_release_dead_lease(client.CoordinationV1Api(api), lease_namespace))
    return done


def _release_dead_lease(coordination: client.CoordinationV1Api, namespace: str) -> list[str]:
    try:
        lease = coordination.read_namespaced_lease(
            LEASE_NAME, namespace, _request_timeout=API_TIMEOUT
        )
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise
    holder = lease.spec.holder_identity or ""
    host, _, rest = holder.partition("/")
    pid = rest.partition("/")[0]
    if (
        host == socket.gethostname()
        and pid.isdigit()
        and not pid_alive(int(pid))
        and int(pid) != os.getpid()
    ):
        coordination.delete_namespaced_lease(LEASE_NAME, namespace, _request_timeout=API_TIMEOUT)
        return [f"released the cluster lease left by dead run {holder}"]
    return []
