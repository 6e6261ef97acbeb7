"""``flywheel-chaos recover``: undo every fault whose rollback did not run.

Sources: the intent files in ``FLYWHEEL_STATE_DIR/intents`` and the
``flywheel-chaos.io/rollback-intent`` annotations on nodes (written before
each mutation, naming the run they belong to, removed when it is undone).
It also deletes RCA debug pods (:mod:`flywheel_chaos.diskview`) that outlived their
deadline: an RCA that was killed before its ``finally`` could delete them.

While a live run holds the cluster lease its intents are its own business:
``recover`` refuses (exit 1, naming the holder) unless ``force``. A lease
left by a dead run on this host is released. ``dry_run`` says what would be
undone and changes nothing. Safe to run twice: a second run finds nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from flywheel_chaos import diskview
from flywheel_chaos.kube.client import API_TIMEOUT, api_client
from flywheel_chaos.kube.intents import (
    Intent,
    annotation_intents,
    clear_intents,
    forget_intent_files,
    read_intents,
)
from flywheel_chaos.kube.safety import LEASE_NAME, LeaseObservations, SafetyRefusal
from flywheel_chaos.undo import undo_intent
from harness.errors import CheckFailed
from harness.processes import pid_alive

logger = logging.getLogger("flywheel_chaos.recover")

DEBUG_POD_STALE_S = 120.0
"""An RCA debug pod older than this is left over (its RCA gives it at most 60 s)."""


@dataclass(frozen=True)
class Pending:
    """One change left undone: the oldest intent of its kind on its node, and every owner."""

    node: str
    kind: str
    undo: dict[str, Any]
    owner: str | None
    others: tuple[str | None, ...]

    def describe(self) -> str:
        runs = ", ".join(str(o) for o in (self.owner, *self.others))
        return (
            f"{self.node}: {self.kind} of run {runs} (undo {json.dumps(self.undo, sort_keys=True)})"
        )


def _describe(result: dict[str, Any]) -> str:
    node = result["node"]
    if "unschedulable" in result:
        return f"{node}: {'left cordoned (it was before)' if result['unschedulable'] else 'uncordoned'}"
    done = [
        text
        for key, text in (
            ("thawed", "lab node resumed"),
            ("restarted", "lab node restarted"),
            ("taint_removed", "unreachable taint removed"),
            ("kubelet_ready", "kubelet back, node Ready"),
        )
        if result.get(key)
    ]
    return f"{node}: {', '.join(done) or 'nothing left to undo'}"


def _holder(lease: Any) -> tuple[str, bool]:
    """The lease's holder and whether it is dead (expired, or a gone process on this host)."""
    holder = str(lease.spec.holder_identity or "") if lease.spec else ""
    if not holder or LeaseObservations().expired(lease):
        return holder, True
    host, _, rest = holder.partition("/")
    pid = rest.partition("/")[0]
    dead_here = (
        host == socket.gethostname()
        and pid.isdigit()
        and int(pid) != os.getpid()
        and not pid_alive(int(pid))
    )
    return holder, dead_here


def pending(core: client.CoreV1Api) -> list[Pending]:
    """Every change left undone, one per node and kind (files and annotations merged)."""
    intents: dict[str, Intent] = {i["id"]: i for i in read_intents() if "id" in i}
    for node in core.list_node(_request_timeout=API_TIMEOUT).items:
        try:
            for intent in annotation_intents(node):
                intents.setdefault(intent["id"], intent)
        except SafetyRefusal as exc:  # named, never taken for "nothing to undo"
            logger.warning("%s", exc)
    grouped: dict[tuple[str, str], list[Intent]] = {}
    for intent in sorted(intents.values(), key=lambda i: str(i.get("created", ""))):
        grouped.setdefault((intent["node"], intent["kind"]), []).append(intent)
    found = []
    for (node, kind), group in grouped.items():
        # the oldest intent holds the state before the harness touched the node
        owners = list(dict.fromkeys(i.get("run_id") for i in group))
        found.append(Pending(node, kind, group[0].get("undo") or {}, owners[0], tuple(owners[1:])))
    return found


def stale_debug_pods(core: client.CoreV1Api, older_than_s: float | None = None) -> list[Any]:
    """RCA debug pods, in any namespace, created more than ``older_than_s`` (default
    :data:`DEBUG_POD_STALE_S`) ago."""
    older_than_s = DEBUG_POD_STALE_S if older_than_s is None else older_than_s
    now = dt.datetime.now(dt.UTC)
    pods = core.list_pod_for_all_namespaces(
        label_selector=f"{diskview.LABEL}={diskview.LABEL_VALUE}", _request_timeout=API_TIMEOUT
    ).items
    return [
        p
        for p in pods
        if p.metadata.creation_timestamp is not None
        and (now - p.metadata.creation_timestamp).total_seconds() > older_than_s
    ]


def recover(
    configuration: dict[str, Any] | None = None,
    lease_namespace: str = "kube-system",
    force: bool = False,
    dry_run: bool = False,
    own_lease: str = "",
) -> list[str]:
    """Undo every change left undone; returns one line per action taken (or planned).

    ``own_lease``: the caller holds the lease under this identity (a game day
    recovering after one of its runs); its lease is then neither a reason to
    refuse nor released.
    """
    api = api_client(configuration)
    core = client.CoreV1Api(api)
    coordination = client.CoordinationV1Api(api)
    try:
        lease: Any = coordination.read_namespaced_lease(
            LEASE_NAME, lease_namespace, _request_timeout=API_TIMEOUT
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
        lease = None
    holder, dead = _holder(lease) if lease is not None else ("", True)
    todo = pending(core)
    ours = bool(own_lease) and holder == own_lease
    if not dead and not force and not ours:
        raise CheckFailed(
            f"a live run holds the cluster lease {lease_namespace}/{LEASE_NAME}: {holder}; "
            f"{len(todo)} change(s) recorded, none undone",
            "wait for it to finish (its rollbacks undo its changes); if it is stuck, "
            "'flywheel-chaos recover --dry-run' shows what --force would undo",
        )
    stale = stale_debug_pods(core)
    if dry_run:
        lines = [f"would undo {p.describe()}" for p in todo]
        lines += [
            f"would delete the RCA debug pod {p.metadata.namespace}/{p.metadata.name} left over"
            for p in stale
        ]
        if lease is not None and dead and not ours:
            lines.append(f"would release the cluster lease left by {holder or 'nobody'}")
        return lines
    done: list[str] = []
    for item in todo:
        try:
            done.append(_describe(undo_intent(core, item.kind, item.node, item.undo, item.owner)))
            for other in item.others:
                clear_intents(core, item.node, item.kind, other)
        except ApiException as exc:
            if exc.status != 404:
                raise
            for owner in (item.owner, *item.others):
                forget_intent_files(item.node, item.kind, owner)
            done.append(f"{item.node}: node is gone")
    for pod in stale:
        if diskview.delete(core, pod.metadata.namespace, pod.metadata.name):
            done.append(
                f"deleted the RCA debug pod {pod.metadata.namespace}/{pod.metadata.name} left over"
            )
    if lease is not None and (dead or force) and holder and not ours:
        with contextlib.suppress(ApiException):
            coordination.delete_namespaced_lease(
                LEASE_NAME,
                lease_namespace,
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(
                        resource_version=lease.metadata.resource_version
                    )
                ),
                _request_timeout=API_TIMEOUT,
            )
            done.append(f"released the cluster lease left by {holder}")
    return done
