"""What a state authority is: endpoint, bucket, protected key, time bounds and retry policy.

Settings come from, in order: an activity's own arguments, the Chaos Toolkit
``configuration`` block, then the environment contract of DESIGN.md
(``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``, ``TOFU_STATE_BUCKET``,
``TOFU_STATE_KEY``). Credentials come from boto3's own chain (environment,
profile, ...) or from the Chaos Toolkit ``secrets`` block; they are never
logged or returned.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from flywheel_chaos import settings
from flywheel_chaos.errors import EXIT_USAGE

__all__ = [
    "CANARY_PREFIX",
    "ConfigurationError",
    "RetryPolicy",
    "StateAuthority",
    "load_authority",
]

CANARY_PREFIX = "_flywheel-chaos/"
DEFAULT_BUCKET = "tofu-state"
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried: data, not code."""

    attempts: int = 3
    first_delay_s: float = 0.1
    factor: float = 2.0
    max_delay_s: float = 1.0

    def delay(self, attempt: int) -> float:
        """Delay after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_delay_s, self.first_delay_s * self.factor ** (attempt - 1)))


@dataclass(frozen=True)
class StateAuthority:
    """One S3 state authority: endpoint, bucket, protected key and time bounds."""

    endpoint: str
    bucket: str = DEFAULT_BUCKET
    key: str = ""
    region: str = DEFAULT_REGION
    path_style: bool = True
    timeout_s: float = 5.0
    connect_timeout_s: float = 1.0
    read_timeout_s: float = 2.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)

    def with_overrides(self, **changes: Any) -> StateAuthority:
        """A copy with the non-empty values of ``changes`` applied."""
        kept = {k: v for k, v in changes.items() if v not in (None, "")}
        return replace(self, **kept)

    @property
    def attempt_budget_s(self) -> float:
        """The longest one attempt can take."""
        return self.connect_timeout_s + self.read_timeout_s


class ConfigurationError(ValueError):
    """The state authority is not configured well enough to be checked (exit 2)."""

    exit_code = EXIT_USAGE

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
    timeout = float(
        timeout_s or cfg.get("s3_timeout_s") or settings.FLYWHEEL_S3_TIMEOUT_S.get(env) or 5.0
    )
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
            bucket,
            cfg.get("tofu_state_bucket"),
            env.get(settings.TOFU_STATE_BUCKET.name),
            DEFAULT_BUCKET,
        ),
        key=_first(key, cfg.get("tofu_state_key"), env.get(settings.TOFU_STATE_KEY.name)),
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


def _credentials(secrets: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    if not secrets:
        return None, None
    for scope in (secrets.get("s3"), secrets.get("aws"), secrets):
        if isinstance(scope, Mapping) and scope.get("aws_access_key_id"):
            return str(scope["aws_access_key_id"]), str(scope.get("aws_secret_access_key", ""))
    return None, None
