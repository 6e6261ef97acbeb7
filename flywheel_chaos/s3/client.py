"""How to talk to the state authority, with bounded time.

Every call goes through :func:`call_with_retries`: one attempt at a time with
connect/read timeouts, retries only for transient failures, each attempt
logged with its number, and no attempt started that could overrun the total
deadline of the check.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from flywheel_chaos.s3.authority import ConfigurationError, StateAuthority, load_authority
from flywheel_chaos.s3.errors import StateAuthorityError, classify

__all__ = ["activity_authority", "call_with_retries", "new_s3_client", "s3_client"]

logger = logging.getLogger("flywheel_chaos.probes")


T = TypeVar("T")


def activity_authority(
    endpoint: str = "",
    bucket: str = "",
    key: str = "",
    timeout_s: float = 0.0,
    configuration: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
) -> StateAuthority:
    """:func:`load_authority` for an activity: a configuration problem is an ``ActivityFailed``."""
    try:
        return load_authority(
            endpoint=endpoint,
            bucket=bucket,
            key=key,
            timeout_s=timeout_s,
            configuration=configuration,
            secrets=secrets,
        )
    except ConfigurationError as exc:
        raise StateAuthorityError("other", "configuration", str(exc), exc.hint) from exc


_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()
_session_lock = threading.Lock()
_create_lock = threading.Lock()
_session: boto3.session.Session | None = None


def s3_client(authority: StateAuthority) -> Any:
    """A cached boto3 S3 client with this authority's timeouts and no hidden retries."""
    cache_key = (
        authority.endpoint,
        authority.region,
        authority.path_style,
        authority.connect_timeout_s,
        authority.read_timeout_s,
        authority.access_key_id,
        hash(authority.secret_access_key),
    )
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            client = new_s3_client(authority)
            _clients[cache_key] = client
        return client


def new_s3_client(authority: StateAuthority) -> Any:
    """A boto3 S3 client of its own (not shared), configured as :func:`s3_client`'s.

    For callers that change a client's behaviour (event handlers) and must not
    change it for every other user of the cached one.

    Clients are made one at a time: botocore caches the S3 service model only once a parse
    of it has finished, so threads making their first clients at once (the prober's beside
    the probes') would each parse it (0.1 s of CPU each).
    """
    session = _session_for_clients()
    with _create_lock:
        return session.client(
            "s3",
            endpoint_url=authority.endpoint,
            region_name=authority.region,
            aws_access_key_id=authority.access_key_id,
            aws_secret_access_key=authority.secret_access_key,
            config=botocore.config.Config(
                connect_timeout=authority.connect_timeout_s,
                read_timeout=authority.read_timeout_s,
                retries={"total_max_attempts": 1, "mode": "standard"},
                s3={"addressing_style": "path" if authority.path_style else "auto"},
                max_pool_connections=16,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )


def _session_for_clients() -> boto3.session.Session:
    global _session
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session


def _transient(error: StateAuthorityError) -> bool:
    return error.error_class in {"endpoint-unreachable", "timeout"} or error.code in {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "500",
        "502",
        "503",
        "504",
        "RequestTimeout",
    }


def _attempt_client(authority: StateAuthority, remaining_s: float) -> Any:
    """A client whose timeouts cannot overrun ``remaining_s`` (quarter-second steps)."""
    if remaining_s >= authority.attempt_budget_s:
        return s3_client(authority)
    connect = max(0.25, math.floor(min(authority.connect_timeout_s, remaining_s / 2) * 4) / 4)
    read = max(0.25, math.floor(min(authority.read_timeout_s, remaining_s - connect) * 4) / 4)
    return s3_client(authority.with_overrides(connect_timeout_s=connect, read_timeout_s=read))


def call_with_retries(
    authority: StateAuthority,
    what: str,
    call: Callable[[Any], T],
    deadline: float | None = None,
    subject: str = "",
) -> T:
    """Run ``call(client)`` with the authority's retry policy inside a total deadline.

    ``deadline`` is a :func:`time.monotonic` instant (default: now plus the
    authority's timeout). Each attempt gets a client whose connect and read
    timeouts fit in the time left, and no attempt starts after the deadline,
    so the check cannot overrun it by more than a quarter second. Raises
    :class:`StateAuthorityError` with the class of the last failure.
    """
    end = deadline if deadline is not None else time.monotonic() + authority.timeout_s
    attempt = 0
    while True:
        attempt += 1
        started = time.monotonic()
        try:
            result = call(_attempt_client(authority, end - started))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            error = classify(exc, authority=authority, subject=subject)
            elapsed_ms = (time.monotonic() - started) * 1000
            logger.info(
                "%s: attempt %d/%d failed after %.0f ms: %s",
                what,
                attempt,
                authority.retry.attempts,
                elapsed_ms,
                error.error_class,
            )
            if not _transient(error) or attempt >= authority.retry.attempts:
                raise error from exc
            pause = authority.retry.delay(attempt)
            if time.monotonic() + pause + 0.25 > end:
                raise error.with_note(
                    f"gave up after attempt {attempt}: the {authority.timeout_s:g}s deadline is reached"
                ) from exc
            time.sleep(pause)
            continue
        logger.debug(
            "%s: attempt %d ok in %.0f ms", what, attempt, (time.monotonic() - started) * 1000
        )
        return result
