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
import subprocess
import sys
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed
from kubernetes import client
from kubernetes.client.rest import ApiException

from actions.cluster import API_TIMEOUT, INTENT_ANNOTATION, api_client, intent_dir
from actions.nodes import UNREACHABLE_TAINT, _taint_body
from harness.controls.safety import LEASE_NAME
from harness.errors import ConfigError
from harness.processes import pid_alive


def _undo(core: client.CoreV1Api, intent: dict[str, Any]) -> str:
    node = intent["node"]
    undo = intent.get("undo") or {}
    if intent["kind"] == "cordon":
        core.patch_node(
            node,
            {"spec": {"unschedulable": True if undo.get("unschedulable") else None}},
            _request_timeout=API_TIMEOUT,
        )
        return f"{node}: {'left cordoned (it was before)' if undo.get('unschedulable') else 'uncordoned'}"
    if intent["kind"] == "unavailable":
        done = []
        if undo.get("thaw_lab_node") and undo.get("lab_dir"):
            cli = Path(sys.executable).parent / "flywheel-chaos"
            subprocess.run(
                [str(cli), "lab", "--lab-dir", str(undo["lab_dir"]), "node", "start", node],
                capture_output=True,
                timeout=30,
                check=False,
            )
            done.append("lab node resumed")
        if undo.get("remove_taint"):
            current = core.read_node(node, _request_timeout=API_TIMEOUT)
            taints = [t.to_dict() for t in current.spec.taints or []]
            kept = [
                t
                for t in taints
                if not (t["key"] == UNREACHABLE_TAINT and t["effect"] == "NoExecute")
            ]
            if len(kept) != len(taints):
                core.patch_node(
                    node,
                    {"spec": {"taints": [_taint_body(t) for t in kept] or None}},
                    _request_timeout=API_TIMEOUT,
                )
                done.append("unreachable taint removed")
        return f"{node}: {', '.join(done) or 'nothing left to undo'}"
    return f"{node}: unknown intent kind {intent['kind']!r} left alone"


def recover(
    configuration: dict[str, Any] | None = None, lease_namespace: str = "kube-system"
) -> list[str]:
    """Undo every recorded intent; returns one line per action taken."""
    try:
        api = api_client(configuration)
    except ActivityFailed as exc:
        raise ConfigError(
            "cannot load a kubeconfig", "set KUBECONFIG (for the lab: source .lab/env)"
        ) from exc
    core = client.CoreV1Api(api)
    done: list[str] = []
    intents: dict[str, dict[str, Any]] = {}
    files: dict[str, Path] = {}
    for path in sorted(intent_dir().glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            intent = json.loads(path.read_text())
            intents[intent["id"]] = intent
            files[intent["id"]] = path
    annotated: dict[str, list[dict[str, Any]]] = {}
    for node in core.list_node(_request_timeout=API_TIMEOUT).items:
        raw = (node.metadata.annotations or {}).get(INTENT_ANNOTATION)
        if raw:
            with contextlib.suppress(ValueError):
                annotated[node.metadata.name] = json.loads(raw)
                for intent in annotated[node.metadata.name]:
                    intents.setdefault(intent["id"], intent)
    # the oldest intent of a kind on a node holds the state before the harness touched it
    seen: set[tuple[str, str]] = set()
    for intent in sorted(intents.values(), key=lambda i: i.get("created", "")):
        key = (intent["node"], intent["kind"])
        if key in seen:
            continue
        seen.add(key)
        try:
            done.append(_undo(core, intent))
        except ApiException as exc:
            if exc.status != 404:
                raise
            done.append(f"{intent['node']}: node is gone")
    for node_name in annotated:
        with contextlib.suppress(ApiException):
            core.patch_node(
                node_name,
                {"metadata": {"annotations": {INTENT_ANNOTATION: None}}},
                _request_timeout=API_TIMEOUT,
            )
    for path in files.values():
        path.unlink(missing_ok=True)
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
