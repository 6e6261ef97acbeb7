"""Safety control: one experiment at a time per cluster, rollbacks that always run, fail closed.

Before the experiment it takes the ``coordination.k8s.io`` Lease
``flywheel-chaos-experiment`` (namespace ``kube-system`` by default) and
renews it in the background with conditional updates
(:class:`~harness.controls.lease.LeaseKeeper`). Whenever it cannot do that
job, the run stops before anything changes: Chaos Toolkit swallows every
exception a control raises except ``InterruptExecution``, so every failure
here (the lease held by another run, a 403 or 404 reading it, an unreachable
API, a game day's lease that is not live) becomes ``InterruptExecution``,
and the evidence control records the run ``aborted`` with the reason.

The run's identity reaches the fault actions through the environment
(``FLYWHEEL_RUN_ID``, ``FLYWHEEL_LEASE_HOLDER``); each mutating action reads
the lease itself and refuses unless this run holds it.

When the lease is lost mid-run (taken over after it expired, deleted, or not
renewable for its whole duration) the run is interrupted before its next
method activity; its rollbacks still run (they undo only this run's own
changes and need no lease) and the record says ``aborted: lease lost``.

Rollbacks run even on Ctrl-C, SIGTERM or a failed run: each experiment sets
``runtime: {rollbacks: {strategy: always}}`` and this control refuses to start
an experiment that does not.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from chaoslib.exceptions import InterruptExecution
from kubernetes import client
from kubernetes.client.rest import ApiException

from flywheel_chaos import settings
from flywheel_chaos.kube.client import API_TIMEOUT, api_client
from flywheel_chaos.kube.safety import LEASE_NAME, LeaseObservations
from harness.controls import current_run
from harness.controls.lease import LeaseKeeper, LeaseRefused, holder_identity

logger = logging.getLogger("flywheel_chaos.controls.safety")

GAMEDAY_ENV = settings.FLYWHEEL_LEASE_IDENTITY.name
"""Set by a game day: the identity of the lease it holds for all of its runs."""

_ENV = (
    settings.FLYWHEEL_RUN_REFUSED.name,
    settings.FLYWHEEL_RUN_ID.name,
    settings.FLYWHEEL_LEASE_HOLDER.name,
    settings.FLYWHEEL_LEASE_NAMESPACE.name,
)
_keeper: dict[str, LeaseKeeper] = {}
_phase: dict[str, str] = {}


def _refuse(why: str, hint: str) -> InterruptExecution:
    """Mark the run refused (actions stand down, the record says aborted) and stop it."""
    run = current_run()
    run.lease_refused = why
    os.environ[settings.FLYWHEEL_RUN_REFUSED.name] = why
    return InterruptExecution(f"safety: refused: {why} (hint: {hint})")


def _lost(why: str) -> None:
    run = current_run()
    run.lease_lost = why
    os.environ[settings.FLYWHEEL_RUN_REFUSED.name] = (
        why  # every mutating action refuses from now on
    )


def _join_game_day(coordination: client.CoordinationV1Api, namespace: str, shared: str) -> None:
    try:
        current = coordination.read_namespaced_lease(
            LEASE_NAME, namespace, _request_timeout=API_TIMEOUT
        )
    except Exception as exc:
        raise _refuse(
            f"cannot read the game day's cluster lease {namespace}/{LEASE_NAME}: {_why(exc)}",
            "the identity needs get on that Lease (deploy/base/rbac.yaml)",
        ) from exc
    holder = current.spec.holder_identity if current.spec else None
    if holder != shared or LeaseObservations().expired(current):
        raise _refuse(
            f"the game day's lease {namespace}/{LEASE_NAME} is not live "
            f"(holder {holder or 'nobody'}, expected {shared})",
            "run the experiment from its game day, or without FLYWHEEL_LEASE_IDENTITY",
        )
    os.environ[settings.FLYWHEEL_LEASE_HOLDER.name] = shared
    logger.info("running under the game day's lease %s", shared)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def before_experiment_control(
    context: dict[str, Any],
    namespace: str = "kube-system",
    lease_duration_s: int = 30,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Take the cluster lease for this run, or stop the run before it changes anything."""
    run = current_run(reset=True)
    for name in _ENV:
        os.environ.pop(name, None)
    _phase["now"] = "before"
    strategy = ((context.get("runtime") or {}).get("rollbacks") or {}).get("strategy")
    if strategy != "always":
        raise _refuse(
            "the experiment does not set runtime.rollbacks.strategy: always",
            "add it so rollbacks run on Ctrl-C",
        )
    os.environ[settings.FLYWHEEL_LEASE_NAMESPACE.name] = namespace
    try:
        coordination = client.CoordinationV1Api(api_client(configuration))
    except Exception as exc:
        raise _refuse(
            f"cannot reach the cluster to take the lease: {exc}",
            "set KUBECONFIG (for the lab: source .lab/env)",
        ) from exc
    shared = os.environ.get(GAMEDAY_ENV)
    if shared:
        _join_game_day(coordination, namespace, shared)
        os.environ[settings.FLYWHEEL_RUN_ID.name] = run.run_id
        return
    keeper = LeaseKeeper(
        coordination, namespace, holder_identity(run.run_id), lease_duration_s, on_lost=_lost
    )
    try:
        keeper.acquire()
    except LeaseRefused as refused:
        raise _refuse(
            f"another experiment holds the cluster lease {namespace}/{LEASE_NAME}: {refused.holder}",
            "wait for it, or run flywheel-chaos recover if it died",
        ) from refused
    except Exception as exc:
        raise _refuse(
            f"cannot take the cluster lease {namespace}/{LEASE_NAME}: {_why(exc)}",
            "the identity needs create/get/update on that Lease (deploy/base/rbac.yaml)",
        ) from exc
    os.environ[settings.FLYWHEEL_RUN_ID.name] = run.run_id
    os.environ[settings.FLYWHEEL_LEASE_HOLDER.name] = keeper.identity
    run.lease = {"namespace": namespace, "name": LEASE_NAME, "holder": keeper.identity}
    keeper.start()
    _keeper["run"] = keeper
    logger.info("holding the cluster lease %s/%s as %s", namespace, LEASE_NAME, keeper.identity)


def before_method_control(context: Any, **kwargs: Any) -> None:
    _phase["now"] = "method"


def before_rollback_control(context: Any, **kwargs: Any) -> None:
    _phase["now"] = "rollback"


def before_activity_control(context: dict[str, Any], **kwargs: Any) -> None:
    """Stop the method (not the rollbacks) as soon as the lease is lost."""
    run = current_run()
    if run.lease_lost and _phase.get("now") != "rollback":
        raise InterruptExecution(
            f"safety: {run.lease_lost}; stopping before {context.get('name')!r}, rollbacks run"
        )


def after_experiment_control(
    context: dict[str, Any],
    state: dict[str, Any],
    namespace: str = "kube-system",
    lease_duration_s: int = 30,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Release the lease if it is still ours."""
    _phase.pop("now", None)
    keeper = _keeper.pop("run", None)
    if keeper is not None:
        try:
            keeper.release()
        except Exception as exc:
            logger.warning(
                "releasing the experiment lease failed (it expires in %ss): %s",
                lease_duration_s,
                exc,
            )
    for name in _ENV:
        os.environ.pop(name, None)
