"""Where the state authority is and how to talk to it, with bounded time.

Settings come from, in order: an activity's own arguments, the Chaos Toolkit
``configuration`` block, then the environment contract of DESIGN.md
(``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``, ``TOFU_STATE_BUCKET``,
``TOFU_STATE_KEY``). Credentials come from boto3's own chain (environment,
profile, ...) or from the Chaos Toolkit ``secrets`` block; they are never
logged or returned.

Every call goes through :func:`call_with_retries`: one attempt at a time with
connect/read timeouts, retries only for transient failures, each attempt
logged with its number, and no attempt started that could overrun the total
deadline of the check.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from probes.authority import CANARY_PREFIX as CANARY_PREFIX
from probes.authority import DEFAULT_BUCKET, DEFAULT_REGION
from probes.authority import RetryPolicy as RetryPolicy
from probes.authority import StateAuthority as StateAuthority
from probes.failures import StateAuthorityError, classify

__all__: list[str] = []  # helpers, not activities

logger = logging.getLogger("flywheel_chaos.probes")


T = TypeVar("T")


class ConfigurationError(ValueError):
    """The state authority is not configured well enough to be checked."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def _first(*values: object) -> str:
    for value in values:
        if value not in (None, ""):
            return str(value)
    return ""


def load_authority(
    endpoint: str = "",
    bucket: str = "",
    key: str = "",
    region: str = "",
    timeout_s: float = 0.0,
    configuration: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> StateAuthority:
    """Resolve the state authority from arguments, configuration and environment.

    Raises :class:`ConfigurationError` when no endpoint can be found or a bound
    is not positive.
    """
    env = os.environ if environ is None else environ
    cfg = configuration or {}
    found_endpoint = _first(
        endpoint,
        cfg.get("aws_endpoint_url_s3"),
        cfg.get("s3_endpoint"),
        env.get("AWS_ENDPOINT_URL_S3"),
        env.get("AWS_ENDPOINT_URL"),
    )
    if not found_endpoint:
        raise ConfigurationError(
            "no S3 endpoint configured",
            "set AWS_ENDPOINT_URL_S3 (for the lab: source .lab/env)",
        )
    if not found_endpoint.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"S3 endpoint {found_endpoint!r} is not an http(s) URL",
            "write it as http://HOST:PORT or https://HOST",
        )
    timeout = float(timeout_s or cfg.get("s3_timeout_s") or env.get("FLYWHEEL_S3_TIMEOUT_S") or 5.0)
    if timeout <= 0:
        raise ConfigurationError(
            f"check timeout must be positive, got {timeout}", "use a value such as 5"
        )
    creds = _credentials(secrets)
    if creds[0] is None and env.get("AWS_ACCESS_KEY_ID"):
        # explicit, so that a changed environment is seen (boto3 caches its chain)
        creds = (env["AWS_ACCESS_KEY_ID"], env.get("AWS_SECRET_ACCESS_KEY", ""))
    return StateAuthority(
        endpoint=found_endpoint.rstrip("/"),
        bucket=_first(
            bucket, cfg.get("tofu_state_bucket"), env.get("TOFU_STATE_BUCKET"), DEFAULT_BUCKET
        ),
        key=_first(key, cfg.get("tofu_state_key"), env.get("TOFU_STATE_KEY")),
        region=_first(
            region,
            cfg.get("aws_region"),
            env.get("AWS_REGION"),
            env.get("AWS_DEFAULT_REGION"),
            DEFAULT_REGION,
        ),
        timeout_s=timeout,
        connect_timeout_s=min(1.0, timeout / 2),
        read_timeout_s=min(2.0, timeout - min(1.0, timeout / 2)),
        access_key_id=creds[0],
        secret_access_key=creds[1],
    )


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


def _credentials(secrets: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    if not secrets:
        return None, None
    for scope in (secrets.get("s3"), secrets.get("aws"), secrets):
        if isinstance(scope, Mapping) and scope.get("aws_access_key_id"):
            return str(scope["aws_access_key_id"]), str(scope.get("aws_secret_access_key", ""))
    return None, None


_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()
_session_lock = threading.Lock()
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
    """
    return _session_for_clients().client(
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
