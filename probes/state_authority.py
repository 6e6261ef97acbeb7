"""Chaos Toolkit probes for an S3 OpenTofu state authority.

Each probe checks one thing the HA gate asks of the state authority and
returns a JSON-serialisable dict; when the check fails it raises
``ActivityFailed`` whose message starts with a class from
:data:`flywheel_chaos.s3.errors.ERROR_CLASSES`. Every probe finishes within its
``timeout_s`` (default 5 s) however the endpoint behaves.

The protected state key is only ever read with HEAD. The probes write only
under ``_flywheel-chaos/`` and remove what they wrote, even when they fail.
"""

import logging
import time

from chaoslib.types import Configuration, Secrets

from flywheel_chaos.results import Result
from flywheel_chaos.s3.checks import (
    check_bucket_listed,
    check_bucket_reachable,
    check_canary_round_trip,
    check_lock_exclusive,
    check_state_key,
    check_versioning,
    run_checks,
)
from flywheel_chaos.s3.client import activity_authority
from flywheel_chaos.s3.errors import StateAuthorityError, error_class

__all__ = [
    "canary_round_trip_ok",
    "lock_exclusive",
    "state_authority_healthy",
    "state_authority_serving_within",
    "state_bucket_listed",
    "state_bucket_reachable",
    "state_key_readable",
    "versioning_enabled",
]

logger = logging.getLogger("flywheel_chaos.probes")


# ------------------------------------------------------------ activities ---


def state_bucket_listed(
    bucket: str = "",
    endpoint: str = "",
    timeout_s: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Check that list-buckets succeeds and lists the state bucket.

    Returns ``{"bucket", "buckets_listed"}``. Raises ``ActivityFailed``
    (``no-such-bucket``, ``access-denied``, ``endpoint-unreachable``,
    ``timeout``, ...) when the call fails or the bucket is not listed.
    """
    return check_bucket_listed(
        activity_authority(endpoint, bucket, "", timeout_s, configuration, secrets)
    )


def state_bucket_reachable(
    bucket: str = "",
    endpoint: str = "",
    timeout_s: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Check that HEAD of the state bucket succeeds.

    Returns ``{"bucket", "region"}``. Raises ``ActivityFailed`` starting with
    ``no-such-bucket`` when the server says the bucket does not exist (the
    RustFS incident), or with the class of any other failure.
    """
    return check_bucket_reachable(
        activity_authority(endpoint, bucket, "", timeout_s, configuration, secrets)
    )


def state_key_readable(
    key: str = "",
    bucket: str = "",
    endpoint: str = "",
    timeout_s: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Check that HEAD of the protected state key succeeds (it is never GET, PUT or DELETE).

    Returns ``{"bucket", "key", "size", "etag", "last_modified", "version_id"}``.
    Raises ``ActivityFailed`` with ``no-such-key`` when the key is missing,
    ``no-such-bucket`` when its bucket is gone, or the class of any other
    failure.
    """
    return check_state_key(
        activity_authority(endpoint, bucket, key, timeout_s, configuration, secrets)
    )


def canary_round_trip_ok(
    size_bytes: int = 1024,
    bucket: str = "",
    endpoint: str = "",
    timeout_s: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Check a bounded write/read/delete of a fresh canary under ``_flywheel-chaos/``.

    Writes ``size_bytes`` (1..65536) random bytes, reads them back and
    compares SHA-256, deletes them and requires HEAD to answer 404. The canary
    is removed even when a step fails. Returns ``{"key", "size", "sha256",
    "put_ms", "get_ms", "delete_ms", "head_after_delete_ms"}``. Raises
    ``ActivityFailed`` with ``integrity-mismatch`` on different bytes or a
    canary that survives DELETE, or the class of the failing call.
    """
    authority = activity_authority(endpoint, bucket, "", timeout_s, configuration, secrets)
    return check_canary_round_trip(authority, size_bytes=size_bytes)


def versioning_enabled(
    bucket: str = "",
    endpoint: str = "",
    timeout_s: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Check that object versioning is Enabled on the state bucket.

    Returns ``{"bucket", "status"}``. Raises ``ActivityFailed`` with
    ``versioning-disabled`` when it is Suspended or was never enabled.
    """
    return check_versioning(
        activity_authority(endpoint, bucket, "", timeout_s, configuration, secrets)
    )


def lock_exclusive(
    race_writers: int = 8,
    race_timeout_s: float = 10.0,
    bucket: str = "",
    endpoint: str = "",
    timeout_s: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Check that the server enforces ``If-None-Match: *`` as OpenTofu's ``use_lockfile`` needs.

    A conditional PUT of a fresh canary ``.tflock`` must succeed and a second
    must get 412; then ``race_writers`` (2..32) concurrent conditional PUTs of
    another fresh lock must let exactly one through within ``race_timeout_s``
    (servers make losers wait: SeaweedFS retries each in 1 s steps). Lock
    canaries are removed afterwards. Returns the observed statuses. Raises
    ``ActivityFailed`` with ``lock-not-exclusive`` when a second writer gets
    in, or the class of the failing call.
    """
    authority = activity_authority(endpoint, bucket, "", timeout_s, configuration, secrets)
    return check_lock_exclusive(authority, race_writers=race_writers, race_timeout_s=race_timeout_s)


def state_authority_healthy(
    key: str = "",
    bucket: str = "",
    endpoint: str = "",
    timeout_s: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Run every state-authority check: list-buckets, head-bucket, state-key HEAD,
    canary write/read/delete, versioning and lock exclusivity.

    Returns ``{"ok": true, "checks": [{"name", "ok", "duration_ms", "error",
    "result"}]}`` when all pass. Raises ``ActivityFailed`` with the class of
    the first failing check and the names of all failing checks otherwise.
    """
    authority = activity_authority(endpoint, bucket, key, timeout_s, configuration, secrets)
    checks = run_checks(authority)
    failed = [c for c in checks if not c["ok"]]
    if failed:
        first = failed[0]["error"]
        assert first is not None  # a failed check always says how
        names = ", ".join(c["name"] for c in failed)
        raise StateAuthorityError(
            error_class(first["class"]),
            first["code"],
            f"{len(failed)} of {len(checks)} checks failed ({names}); first: {first['detail']}",
            first["hint"],
        )
    return {"ok": True, "checks": checks}


def state_authority_serving_within(
    within_s: float = 60.0,
    interval_s: float = 0.5,
    round_trip: bool = True,
    stable_s: float = 3.0,
    key: str = "",
    bucket: str = "",
    endpoint: str = "",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Wait until the state authority serves again, stably, for at most ``within_s`` seconds.

    Serving means HEAD of the state key succeeds and, with ``round_trip``, a
    canary write/read/delete passes too (a restarted server may answer HEAD
    before it can return data). One success is not enough: a replicated
    server can serve some keys while others still route to a member that left,
    so every attempt must pass for ``stable_s`` seconds in a row (a failure
    starts the count again; 0 accepts the first success). Put it in a method
    after a fault action so that the after-fault hypothesis checks a recovered
    service. Attempts are ``interval_s`` apart, each logged with its number.
    Returns ``{"seconds", "attempts", "failures", "stable_s"}``: ``seconds``
    until the first attempt of the stable run. Raises ``ActivityFailed`` at the
    deadline: class ``not-stable`` when it served at times but never for
    ``stable_s`` in a row, else the class of the last failure.
    """
    authority = activity_authority(
        endpoint, bucket, key, min(2.0, within_s), configuration, secrets
    )
    started = time.monotonic()
    deadline = started + within_s
    attempt = failures = 0
    stable_since: float | None = None
    served = False
    last_error: StateAuthorityError | None = None
    while True:
        attempt += 1
        now = time.monotonic()
        try:
            check_state_key(authority)
            if round_trip:
                check_canary_round_trip(authority)
            served = True
            if stable_since is None:
                stable_since = now
            if time.monotonic() - stable_since >= stable_s:
                return {
                    "seconds": round(stable_since - started, 3),
                    "attempts": attempt,
                    "failures": failures,
                    "stable_s": stable_s,
                }
        except StateAuthorityError as exc:
            failures += 1
            stable_since, last_error = None, exc
            logger.info("serving-within: attempt %d: %s", attempt, exc.error_class)
        if time.monotonic() + interval_s >= deadline:
            if served or last_error is None:
                # it served at times, never for long enough
                raise StateAuthorityError(
                    "not-stable",
                    last_error.code if last_error else "-",
                    f"served for less than {stable_s:g}s in a row within {within_s:g}s "
                    f"({attempt} attempts, {failures} failed"
                    + (f", last: {last_error.error_class}" if last_error else "")
                    + ")",
                )
            raise last_error.with_note(
                f"still not serving after {within_s:g}s ({attempt} attempts)"
            ) from last_error
        time.sleep(interval_s)
