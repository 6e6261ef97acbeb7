"""The one-experiment-at-a-time cluster lease, kept by a run or a game day.

A :class:`LeaseKeeper` takes the ``coordination.k8s.io`` Lease
``flywheel-chaos-experiment`` and renews it in the background. Every renewal
is a conditional update (the ``resourceVersion`` read with the holder this
keeper wrote): a lease taken over by someone else is never refreshed, and the
keeper notices it lost the lease when the holder changed, the lease is gone,
or renewals kept failing until it expired. Then ``lost`` says why, and
``on_lost`` is called once.

:func:`holding_lease` holds one around a block and sets the environment the
fault actions check (``FLYWHEEL_RUN_ID``, ``FLYWHEEL_LEASE_HOLDER``), for
code that calls the actions directly (tests, benchmarks).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from flywheel_chaos import settings
from flywheel_chaos.kube.client import API_TIMEOUT, api_client
from flywheel_chaos.kube.safety import LEASE_NAME, LeaseObservations

logger = logging.getLogger("flywheel_chaos.controls.lease")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _micro(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def holder_identity(run_id: str) -> str:
    """``host/pid/run``: who holds the lease, and how ``recover`` tells a dead holder."""
    return f"{socket.gethostname()}/{os.getpid()}/{run_id}"


class LeaseRefused(Exception):
    """The lease is held by someone else (``holder``)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


@dataclass
class LeaseKeeper:
    """Takes, renews and releases the cluster lease for one holder identity."""

    coordination: client.CoordinationV1Api
    namespace: str
    identity: str
    duration_s: int = 30
    on_lost: Callable[[str], None] | None = None
    lost: str | None = None
    resource_version: str | None = None
    renewals: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _body(self, acquired: dt.datetime) -> dict[str, Any]:
        now = _now()
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration_s,
                "acquireTime": _micro(acquired),
                "renewTime": _micro(now),
            },
        }

    def _read(self) -> Any:
        return self.coordination.read_namespaced_lease(
            LEASE_NAME, self.namespace, _request_timeout=API_TIMEOUT
        )

    def acquire(self) -> None:
        """Take the lease, or raise :class:`LeaseRefused` naming its live holder.

        API errors (403, unreachable) propagate: the caller fails closed.
        """
        try:
            current = self._read()
        except ApiException as exc:
            if exc.status != 404:
                raise
            try:
                created = self.coordination.create_namespaced_lease(
                    self.namespace, self._body(_now()), _request_timeout=API_TIMEOUT
                )
            except ApiException as create_exc:
                if create_exc.status == 409:  # someone else was faster
                    raise LeaseRefused(str(self._read().spec.holder_identity)) from create_exc
                raise
            self.resource_version = created.metadata.resource_version
            return
        holder = current.spec.holder_identity if current.spec else None
        if holder not in (None, "", self.identity):
            current = self._await_expiry(current)
        body = self._body(_now())
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        try:
            replaced = self.coordination.replace_namespaced_lease(
                LEASE_NAME, self.namespace, body, _request_timeout=API_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 409:  # lost a race for an expired lease
                raise LeaseRefused(str(self._read().spec.holder_identity)) from exc
            raise
        self.resource_version = replaced.metadata.resource_version

    def _await_expiry(self, current: Any) -> Any:
        """Watch a foreign lease (polling, 1 s apart) until it changes (a live holder:
        refuse) or this host has seen it unchanged for its duration (expired: the latest
        read is returned, for a conditional take-over). Never judged by clocks."""
        observations = LeaseObservations()
        duration = float(current.spec.lease_duration_seconds or 0)
        deadline = time.monotonic() + duration + 2.0
        version = current.metadata.resource_version
        while True:
            if observations.expired(current):
                logger.info(
                    "lease held by %s unchanged for %.0f s here: expired",
                    current.spec.holder_identity,
                    duration,
                )
                return current
            if time.monotonic() >= deadline:
                raise LeaseRefused(str(current.spec.holder_identity))
            time.sleep(1.0)
            current = self._read()
            if current.metadata.resource_version != version:
                raise LeaseRefused(str(current.spec.holder_identity or "someone"))

    def renew(self) -> None:
        """One conditional renewal; sets ``lost`` when the lease is no longer ours."""
        try:
            current = self._read()
        except ApiException as exc:
            if exc.status == 404:
                self._lose("the lease was deleted")
                return
            raise
        holder = current.spec.holder_identity if current.spec else None
        if holder != self.identity:
            self._lose(f"the lease is now held by {holder or 'nobody'}")
            return
        if current.metadata.resource_version != self.resource_version:
            # someone else wrote it, even if the holder reads the same: not ours to refresh
            self._lose("the lease was changed by another writer")
            return
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": LEASE_NAME,
                "namespace": self.namespace,
                "resourceVersion": current.metadata.resource_version,
            },
            "spec": {
                **self._spec_dict(current.spec),
                "renewTime": _micro(_now()),
            },
        }
        try:
            replaced = self.coordination.replace_namespaced_lease(
                LEASE_NAME, self.namespace, body, _request_timeout=API_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 409:
                self._lose("the lease was changed by another writer while renewing")
                return
            raise
        self.resource_version = replaced.metadata.resource_version
        self.renewals += 1

    @staticmethod
    def _spec_dict(spec: Any) -> dict[str, Any]:
        return {
            "holderIdentity": spec.holder_identity,
            "leaseDurationSeconds": spec.lease_duration_seconds,
            "acquireTime": _micro(spec.acquire_time) if spec.acquire_time else None,
        }

    def _lose(self, why: str) -> None:
        if self.lost is not None:
            return
        self.lost = f"lease lost: {why}"
        logger.error("%s (%s/%s, holder %s)", self.lost, self.namespace, LEASE_NAME, self.identity)
        if self.on_lost is not None:
            self.on_lost(self.lost)

    def _loop(self) -> None:
        interval = max(1.0, self.duration_s / 3)
        last_ok = time.monotonic()
        attempt = 0
        while not self._stop.wait(interval) and self.lost is None:
            attempt += 1
            try:
                self.renew()
                last_ok = time.monotonic()
            except Exception as exc:  # an unreachable API: the lease runs out
                logger.warning("renewing the cluster lease: attempt %d failed: %s", attempt, exc)
                if time.monotonic() - last_ok >= self.duration_s:
                    self._lose(f"not renewed for {self.duration_s} s ({exc})")

    def start(self) -> None:
        """Renew in the background every third of the lease duration."""
        self._thread = threading.Thread(target=self._loop, name="lease-renewal", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=API_TIMEOUT[0] + API_TIMEOUT[1] + 1)

    def release(self) -> bool:
        """Stop renewing and delete the lease if it is still ours (conditional on its version)."""
        self.stop()
        if self.lost is not None:
            return False
        try:
            current = self._read()
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        if current.spec.holder_identity != self.identity:
            return False
        self.coordination.delete_namespaced_lease(
            LEASE_NAME,
            self.namespace,
            body=client.V1DeleteOptions(
                preconditions=client.V1Preconditions(
                    resource_version=current.metadata.resource_version
                )
            ),
            _request_timeout=API_TIMEOUT,
        )
        return True


@contextlib.contextmanager
def holding_lease(
    namespace: str = "kube-system",
    duration_s: int = 30,
    configuration: dict[str, Any] | None = None,
) -> Iterator[LeaseKeeper]:
    """Hold the cluster lease around a block, as the safety control does around a run.

    Sets ``FLYWHEEL_RUN_ID``, ``FLYWHEEL_LEASE_HOLDER`` and
    ``FLYWHEEL_LEASE_NAMESPACE`` so that the fault actions called inside see
    a run that holds the lease; restores the environment and releases the
    lease after.
    """
    run_id = uuid.uuid4().hex[:12]
    keeper = LeaseKeeper(
        client.CoordinationV1Api(api_client(configuration)),
        namespace,
        holder_identity(run_id),
        duration_s,
    )
    keeper.acquire()
    keeper.start()
    saved = {
        name: os.environ.get(name)
        for name in (
            settings.FLYWHEEL_RUN_ID.name,
            settings.FLYWHEEL_LEASE_HOLDER.name,
            settings.FLYWHEEL_LEASE_NAMESPACE.name,
        )
    }
    os.environ.update(
        {
            settings.FLYWHEEL_RUN_ID.name: run_id,
            settings.FLYWHEEL_LEASE_HOLDER.name: keeper.identity,
            settings.FLYWHEEL_LEASE_NAMESPACE.name: namespace,
        }
    )
    try:
        yield keeper
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        keeper.release()
