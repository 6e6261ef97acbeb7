"""The pre-mutation guard: every state-authority check, fail closed.

Run before any ``tofu apply``; any failed check, or any doubt (a check that
could not run), means "do not mutate".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from flywheel_chaos.s3.authority import ConfigurationError, StateAuthority, load_authority
from flywheel_chaos.s3.checks import CheckResult, run_checks
from harness.backend_config import read_backend_config
from harness.errors import ConfigError


@dataclass
class GuardReport:
    """What the guard found: per-check results and the overall verdict."""

    authority: StateAuthority
    checks: list[CheckResult] = field(default_factory=list)
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check["ok"] for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        """The contract of ``flywheel-chaos guard --json`` (plus target and timing)."""
        return {
            "ok": self.ok,
            "target": {
                "endpoint": self.authority.endpoint,
                "bucket": self.authority.bucket,
                "key": self.authority.key,
                "region": self.authority.region,
            },
            "duration_ms": round(self.duration_ms, 1),
            "checks": [
                {
                    "name": c["name"],
                    "ok": c["ok"],
                    "duration_ms": c["duration_ms"],
                    "error": (
                        {"class": c["error"]["class"], "message": c["error"]["message"]}
                        if c["error"]
                        else None
                    ),
                    "result": c["result"],
                }
                for c in self.checks
            ],
        }


def resolve_authority(
    endpoint: str = "",
    bucket: str = "",
    key: str = "",
    region: str = "",
    timeout_s: float = 0.0,
    backend_config: Path | None = None,
) -> StateAuthority:
    """Flags, then the backend config file, then the environment."""
    path_style: bool | None = None
    if backend_config is not None:
        backend = read_backend_config(backend_config)
        endpoint = endpoint or backend.endpoint
        bucket = bucket or backend.bucket
        key = key or backend.key
        region = region or backend.region
        path_style = backend.path_style
    try:
        authority = load_authority(
            endpoint=endpoint, bucket=bucket, key=key, region=region, timeout_s=timeout_s
        )
    except ConfigurationError as exc:
        raise ConfigError(str(exc), exc.hint) from exc
    if not authority.key:
        raise ConfigError(
            "no state key configured",
            "set TOFU_STATE_KEY, pass --key, or give --backend-config with a key",
        )
    if not _credentials_available(authority):
        raise ConfigError(
            "no S3 credentials found",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for the lab: source .lab/env)",
        )
    if path_style is not None:
        authority = authority.with_overrides(path_style=path_style)
    return authority


def _credentials_available(authority: StateAuthority) -> bool:
    if authority.access_key_id:
        return True
    return boto3.session.Session().get_credentials() is not None


def run_guard(authority: StateAuthority) -> GuardReport:
    """Run every check against ``authority``."""
    started = time.monotonic()
    checks = run_checks(authority)
    return GuardReport(authority, checks, (time.monotonic() - started) * 1000)
