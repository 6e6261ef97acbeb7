"""Small helpers shared by the actions: the Kubernetes client, safety checks and rollback intent.

Every mutating action: refuses unless this run holds the cluster lease (read
from the API, not assumed: :func:`require_lease`), checks the node and
namespace allowlists, refuses when fewer than ``min_ready_nodes`` other nodes
would stay Ready, writes its rollback intent (what it changes, how to undo it,
and the run it belongs to) to a local file and as an annotation on the object
*before* it changes anything, refuses when another run's intent is on that
object, and supports a dry run. A run undoes and forgets only its own intents;
``flywheel-chaos recover`` undoes whatever intent is left.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

__all__: list[str] = []  # helpers, not activities

INTENT_ANNOTATION = "flywheel-chaos.io/rollback-intent"
API_TIMEOUT = (3.0, 10.0)

LEASE_NAME = "flywheel-chaos-experiment"
"""The one-experiment-at-a-time ``coordination.k8s.io`` Lease."""
LEASE_NAMESPACE_ENV = "FLYWHEEL_LEASE_NAMESPACE"
"""Namespace of the lease (default ``kube-system``), set by the safety control."""
LEASE_HOLDER_ENV = "FLYWHEEL_LEASE_HOLDER"
"""Holder identity of the lease this run relies on (its own, or its game day's)."""
RUN_ENV = "FLYWHEEL_RUN_ID"
REFUSED_ENV = "FLYWHEEL_RUN_REFUSED"


class SafetyRefusal(ActivityFailed):  # type: ignore[misc]
    """A mutating action refused before it changed anything."""


class KubeconfigError(ActivityFailed):  # type: ignore[misc]
    """No usable cluster configuration (the CLI reports it as a configuration error)."""


def api_client(configuration: Mapping[str, Any] | None = None) -> client.ApiClient:
    """A client for ``KUBECONFIG`` (or the in-cluster service account)."""
    cfg = configuration or {}
    path = cfg.get("kubeconfig") or os.environ.get("KUBECONFIG")
    try:
        if path:
            return config.new_client_from_config(config_file=str(path))
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
            return client.ApiClient()
        return config.new_client_from_config()
    except Exception as exc:  # kubernetes raises several kinds
        raise KubeconfigError(
            f"configuration: cannot load a kubeconfig ({exc}) (hint: set KUBECONFIG; for the lab: source .lab/env)"
        ) from exc


def core_api(configuration: Mapping[str, Any] | None = None) -> client.CoreV1Api:
    return client.CoreV1Api(api_client(configuration))


def setting(configuration: Mapping[str, Any] | None, key: str, env: str, default: str = "") -> str:
    """A setting from the experiment's configuration ``key``, else the environment ``env``."""
    value = (configuration or {}).get(key)
    return str(value) if value not in (None, "") else os.environ.get(env, default)


def _list_setting(configuration: Mapping[str, Any] | None, key: str, env: str) -> list[str]:
    raw = (configuration or {}).get(key)
    if raw is None:
        raw = os.environ.get(env, "")
    if isinstance(raw, str):
        return [item.strip() for item in raw.split(",") if item.strip()]
    return [str(item) for item in raw]


def node_allowlist(configuration: Mapping[str, Any] | None) -> list[str]:
    return _list_setting(configuration, "flywheel_node_allowlist", "FLYWHEEL_NODE_ALLOWLIST")


def namespace_allowlist(configuration: Mapping[str, Any] | None) -> list[str]:
    return _list_setting(
        configuration, "flywheel_namespace_allowlist", "FLYWHEEL_NAMESPACE_ALLOWLIST"
    )


def refused_run() -> str | None:
    """Why this run may not mutate (set by the safety control: lease held elsewhere, or lost)."""
    return os.environ.get(REFUSED_ENV) or None


def run_id() -> str | None:
    """The id of the run this process belongs to (set by the safety control)."""
    return os.environ.get(RUN_ENV) or None


def lease_namespace() -> str:
    return os.environ.get(LEASE_NAMESPACE_ENV) or "kube-system"


def lease_expired(spec: Any, now: dt.datetime) -> bool:
    """Whether a Lease spec has no holder or was not renewed within its duration."""
    if not spec or not spec.holder_identity:
        return True
    renewed = spec.renew_time or spec.acquire_time
    if renewed is None:
        return True
    return bool((now - renewed).total_seconds() > (spec.lease_duration_seconds or 0))


def require_lease(configuration: Mapping[str, Any] | None) -> str:
    """Refuse unless this run holds the live cluster lease; returns the run id.

    Checked against the API every time, not assumed: the lease must exist,
    name this run's holder identity and be unexpired. Any failure to read it
    (a 403, an unreachable API) refuses too: fail closed.
    """
    reason = refused_run()
    if reason:
        raise SafetyRefusal(f"refused: {reason}")
    run, holder = run_id(), os.environ.get(LEASE_HOLDER_ENV)
    if not run or not holder:
        raise SafetyRefusal(
            "refused: this run holds no cluster lease (hint: run the experiment with chaos run "
            "and its harness.controls.safety control, which takes the lease first)"
        )
    namespace = lease_namespace()
    try:
        lease = client.CoordinationV1Api(api_client(configuration)).read_namespaced_lease(
            LEASE_NAME, namespace, _request_timeout=API_TIMEOUT
        )
    except ApiException as exc:
        raise SafetyRefusal(
            f"refused: cannot read the cluster lease {namespace}/{LEASE_NAME}: {exc.status} "
            f"{exc.reason} (hint: the identity needs get on that Lease; see deploy/rbac.yaml)"
        ) from exc
    except Exception as exc:  # unreachable API, TLS, timeouts: fail closed
        raise SafetyRefusal(
            f"refused: cannot read the cluster lease {namespace}/{LEASE_NAME}: {exc}"
        ) from exc
    current = lease.spec.holder_identity if lease.spec else None
    if current != holder:
        raise SafetyRefusal(
            f"refused: the cluster lease {namespace}/{LEASE_NAME} is held by {current or 'nobody'}, "
            f"not by this run ({holder})"
        )
    if lease_expired(lease.spec, dt.datetime.now(dt.UTC)):
        raise SafetyRefusal(
            f"refused: this run's cluster lease {namespace}/{LEASE_NAME} has expired "
            "(not renewed in time)"
        )
    return run


def check_node_allowed(node: str, configuration: Mapping[str, Any] | None) -> None:
    allowed = node_allowlist(configuration)
    if node not in allowed:
        raise SafetyRefusal(
            f"refused: node {node!r} is not in the node allowlist {allowed or '(empty)'} "
            "(hint: set flywheel_node_allowlist in the experiment's configuration or FLYWHEEL_NODE_ALLOWLIST)"
        )


def check_namespace_allowed(namespace: str, configuration: Mapping[str, Any] | None) -> None:
    allowed = namespace_allowlist(configuration)
    if namespace not in allowed:
        raise SafetyRefusal(
            f"refused: namespace {namespace!r} is not in the namespace allowlist {allowed or '(empty)'} "
            "(hint: set flywheel_namespace_allowlist or FLYWHEEL_NAMESPACE_ALLOWLIST)"
        )


def _ready(node: Any) -> bool:
    conditions = node.status.conditions or [] if node.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def read_node(core: client.CoreV1Api, name: str) -> Any:
    try:
        return core.read_node(name, _request_timeout=API_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            raise SafetyRefusal(
                f"refused: node {name!r} does not exist (hint: kubectl get nodes)"
            ) from exc
        raise ActivityFailed(f"reading node {name!r} failed: {exc.status} {exc.reason}") from exc


def check_min_ready(core: client.CoreV1Api, node: str, min_ready_nodes: int) -> list[str]:
    """Names of the other Ready schedulable nodes; refuse when fewer than ``min_ready_nodes``."""
    nodes = core.list_node(_request_timeout=API_TIMEOUT).items
    others = [
        n.metadata.name
        for n in nodes
        if n.metadata.name != node and _ready(n) and not (n.spec and n.spec.unschedulable)
    ]
    if len(others) < min_ready_nodes:
        raise SafetyRefusal(
            f"refused: only {len(others)} other node(s) are Ready and schedulable ({', '.join(others) or 'none'}); "
            f"min_ready_nodes is {min_ready_nodes} (hint: bring nodes back before injecting this fault)"
        )
    return others


def state_dir() -> Path:
    return Path(os.environ.get("FLYWHEEL_STATE_DIR") or ".flywheel").resolve()


def intent_dir() -> Path:
    directory = state_dir() / "intents"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


INTENT_UPDATE_ATTEMPTS = 5
"""Attempts of a conditional annotation update that lost a race (409) before giving up."""


def _update_intents(
    core: client.CoreV1Api,
    node: str,
    change: Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None],
) -> None:
    """Apply ``change`` to the node's intent annotation as a conditional update.

    ``change`` gets the current intents and returns the new list (None: no
    change). The patch carries the node's resourceVersion, so a concurrent
    writer is never overwritten: on 409 the node is read again and ``change``
    applied anew, up to :data:`INTENT_UPDATE_ATTEMPTS` attempts, each logged.
    """
    for attempt in range(1, INTENT_UPDATE_ATTEMPTS + 1):
        node_obj = core.read_node(node, _request_timeout=API_TIMEOUT)
        wanted = change(_annotation_intents(node_obj))
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
            logging.getLogger("flywheel_chaos.actions").info(
                "intent annotation on %s: attempt %d/%d lost a race (409); reading again",
                node,
                attempt,
                INTENT_UPDATE_ATTEMPTS,
            )


def write_intent(
    core: client.CoreV1Api, kind: str, node: str, undo: dict[str, Any]
) -> dict[str, Any]:
    """Record, before mutating ``node``, what will change, how to undo it and whose change it is.

    Refuses (:class:`SafetyRefusal`) when another run's intent is on the node:
    its change is not undone yet, and this run would take the state it left
    for the original one.
    """
    owner = run_id()
    intent = {
        "id": uuid.uuid4().hex[:12],
        "kind": kind,
        "node": node,
        "undo": undo,
        "created": _now(),
        "by": f"{socket.gethostname()}/{os.getpid()}",
        "run_id": owner,
    }

    def add(existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def _annotation_intents(node_obj: Any) -> list[dict[str, Any]]:
    raw = (node_obj.metadata.annotations or {}).get(INTENT_ANNOTATION)
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def read_intents() -> list[dict[str, Any]]:
    intents = []
    for path in sorted(intent_dir().glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            intents.append(json.loads(path.read_text()))
    return intents


def node_intents(core: client.CoreV1Api, node: str, owner: str | None) -> list[dict[str, Any]]:
    """Intents of run ``owner`` recorded on ``node`` (oldest first)."""
    intents = _annotation_intents(core.read_node(node, _request_timeout=API_TIMEOUT))
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

    def drop(current: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        remaining = [i for i in current if not (i.get("kind") == kind and i.get("run_id") == owner)]
        return None if len(remaining) == len(current) else remaining

    try:
        _update_intents(core, node, drop)
    except ApiException as exc:
        if exc.status != 404:
            raise


def wait_pods_gone(
    core: client.CoreV1Api,
    uids: list[str],
    deadline: float,
    namespace: str = "",
    field_selector: str = "",
    label_selector: str = "",
    observe: Callable[[Any], None] | None = None,
) -> dict[str, float]:
    """Wait, by watching, until the pods ``uids`` are deleted; returns uid -> epoch when gone.

    Lists once, then watches from that list's resourceVersion (re-listing
    after a broken watch). Pods still present at ``deadline`` (a
    :func:`time.monotonic` instant) are missing from the result: the caller
    names them. ``observe``, when given, sees every pod object listed or
    watched meanwhile (replacements included), as it arrives.
    """
    gone: dict[str, float] = {}
    waiting = set(uids)
    selectors = {"field_selector": field_selector or None, "label_selector": label_selector or None}
    lister = (
        functools.partial(core.list_namespaced_pod, namespace)
        if namespace
        else core.list_pod_for_all_namespaces
    )
    while waiting:
        pods = lister(**selectors, _request_timeout=API_TIMEOUT)
        if observe is not None:
            for pod in pods.items:
                observe(pod)
        for uid in waiting - {p.metadata.uid for p in pods.items}:
            gone[uid] = time.time()
        waiting -= set(gone)
        remaining = deadline - time.monotonic()
        if not waiting or remaining <= 0:
            break
        stream = watch.Watch()
        try:
            for event in stream.stream(
                lister,
                **selectors,
                resource_version=pods.metadata.resource_version,
                timeout_seconds=max(1, int(min(remaining, 30))),
                _request_timeout=(3.0, min(remaining, 30) + 5),
            ):
                deleted = getattr(getattr(event["object"], "metadata", None), "uid", None)
                if observe is not None and event["type"] in ("ADDED", "MODIFIED"):
                    observe(event["object"])
                if event["type"] == "DELETED" and deleted in waiting:
                    gone[str(deleted)] = time.time()
                    waiting.discard(str(deleted))
                if not waiting or time.monotonic() >= deadline:
                    break
        except Exception as exc:  # a broken watch: the next list catches up
            logging.getLogger("flywheel_chaos.actions").debug("watch ended: %s", exc)
        finally:
            stream.stop()
    return gone
