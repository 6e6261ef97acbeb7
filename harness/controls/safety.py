"""Safety control: one experiment at a time per cluster, and rollbacks that always run.

Before the experiment it takes the ``coordination.k8s.io`` Lease
``flywheel-chaos-experiment`` (namespace ``kube-system`` by default) and
renews it in the background; a second run finds it held, refuses, names the
holder and changes nothing (its fault and rollback actions stand down). A
lease whose holder stopped renewing expires after ``lease_duration_s``.
After the experiment the lease is released.

Rollbacks run even on Ctrl-C, SIGTERM or a failed run: each experiment sets
``runtime: {rollbacks: {strategy: always}}`` and this control refuses to start
an experiment that does not.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from typing import Any

from chaoslib.exceptions import InterruptExecution
from kubernetes import client
from kubernetes.client.rest import ApiException

from actions.cluster import API_TIMEOUT, api_client
from harness.controls import current_run

logger = logging.getLogger("flywheel_chaos.controls.safety")

LEASE_NAME = "flywheel-chaos-experiment"
REFUSED_ENV = "FLYWHEEL_RUN_REFUSED"
RUN_ENV = "FLYWHEEL_RUN_ID"

_renewer: dict[str, Any] = {}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _micro(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def holder_identity(run_id: str) -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{run_id}"


def lease_expired(spec: Any, now: dt.datetime) -> bool:
    if not spec or not spec.holder_identity:
        return True
    renewed = spec.renew_time or spec.acquire_time
    if renewed is None:
        return True
    return bool((now - renewed).total_seconds() > (spec.lease_duration_seconds or 0))


def acquire(
    coordination: client.CoordinationV1Api, namespace: str, identity: str, duration_s: int
) -> tuple[bool, str]:
    """Take the lease; returns (taken, holder)."""
    now = _now()
    body: dict[str, Any] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": namespace},
        "spec": {
            "holderIdentity": identity,
            "leaseDurationSeconds": duration_s,
            "acquireTime": _micro(now),
            "renewTime": _micro(now),
        },
    }
    try:
        current = coordination.read_namespaced_lease(
            LEASE_NAME, namespace, _request_timeout=API_TIMEOUT
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
        try:
            coordination.create_namespaced_lease(namespace, body, _request_timeout=API_TIMEOUT)
            return True, identity
        except ApiException as create_exc:
            if create_exc.status == 409:  # someone else was faster
                current = coordination.read_namespaced_lease(
                    LEASE_NAME, namespace, _request_timeout=API_TIMEOUT
                )
                return False, str(current.spec.holder_identity)
            raise
    if current.spec.holder_identity not in (None, "", identity) and not lease_expired(
        current.spec, now
    ):
        return False, str(current.spec.holder_identity)
    body["metadata"]["resourceVersion"] = current.metadata.resource_version
    try:
        coordination.replace_namespaced_lease(
            LEASE_NAME, namespace, body, _request_timeout=API_TIMEOUT
        )
    except ApiException as exc:
        if exc.status == 409:  # lost a race for an expired lease
            latest = coordination.read_namespaced_lease(
                LEASE_NAME, namespace, _request_timeout=API_TIMEOUT
            )
            return False, str(latest.spec.holder_identity)
        raise
    return True, identity


def release(coordination: client.CoordinationV1Api, namespace: str, identity: str) -> bool:
    try:
        current = coordination.read_namespaced_lease(
            LEASE_NAME, namespace, _request_timeout=API_TIMEOUT
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    if current.spec.holder_identity != identity:
        return False
    coordination.delete_namespaced_lease(
        LEASE_NAME,
        namespace,
        body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=current.metadata.resource_version)
        ),
        _request_timeout=API_TIMEOUT,
    )
    return True


def _renew_loop(
    coordination: client.CoordinationV1Api,
    namespace: str,
    identity: str,
    duration_s: int,
    stop: threading.Event,
) -> None:
    while not stop.wait(max(1.0, duration_s / 3)):
        try:
            coordination.patch_namespaced_lease(
                LEASE_NAME,
                namespace,
                {"spec": {"renewTime": _micro(_now())}},
                _request_timeout=API_TIMEOUT,
            )
        except Exception as exc:
            logger.warning("renewing the experiment lease failed: %s", exc)


def before_experiment_control(
    context: dict[str, Any],
    namespace: str = "kube-system",
    lease_duration_s: int = 30,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    run = current_run(reset=True)
    os.environ.pop(REFUSED_ENV, None)
    strategy = ((context.get("runtime") or {}).get("rollbacks") or {}).get("strategy")
    if strategy != "always":
        run.lease_refused = "the experiment does not set runtime.rollbacks.strategy: always"
        os.environ[REFUSED_ENV] = run.lease_refused
        raise InterruptExecution(
            f"safety: refused: {run.lease_refused} (hint: add it so rollbacks run on Ctrl-C)"
        )
    coordination = client.CoordinationV1Api(api_client(configuration))
    shared = os.environ.get("FLYWHEEL_LEASE_IDENTITY")  # a game day holds the lease for its runs
    if shared:
        current = coordination.read_namespaced_lease(
            LEASE_NAME, namespace, _request_timeout=API_TIMEOUT
        )
        if current.spec.holder_identity == shared and not lease_expired(current.spec, _now()):
            os.environ[RUN_ENV] = run.run_id
            logger.info("running under the game day's lease %s", shared)
            return
    identity = holder_identity(run.run_id)
    taken, holder = acquire(coordination, namespace, identity, lease_duration_s)
    if not taken:
        run.lease_refused = (
            f"another experiment holds the cluster lease {namespace}/{LEASE_NAME}: {holder}"
        )
        os.environ[REFUSED_ENV] = run.lease_refused
        raise InterruptExecution(
            f"safety: refused: {run.lease_refused} (hint: wait for it, or run flywheel-chaos recover if it died)"
        )
    os.environ[RUN_ENV] = run.run_id
    run.lease = {"namespace": namespace, "name": LEASE_NAME, "holder": identity}
    stop = threading.Event()
    thread = threading.Thread(
        target=_renew_loop,
        args=(coordination, namespace, identity, lease_duration_s, stop),
        daemon=True,
    )
    thread.start()
    _renewer.update(stop=stop, thread=thread, coordination=coordination)
    logger.info("holding the cluster lease %s/%s as %s", namespace, LEASE_NAME, identity)


def after_experiment_control(
    context: dict[str, Any],
    state: dict[str, Any],
    namespace: str = "kube-system",
    lease_duration_s: int = 30,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    run = current_run()
    stop = _renewer.pop("stop", None)
    if stop is not None:
        stop.set()
        _renewer.pop("thread").join(timeout=5)
    if run.lease is not None:
        try:
            release(_renewer.pop("coordination"), namespace, run.lease["holder"])
        except Exception as exc:
            logger.warning(
                "releasing the experiment lease failed (it expires in %ss): %s",
                lease_duration_s,
                exc,
            )
    os.environ.pop(RUN_ENV, None)
