"""OpenTofu runs against the state authority: the binary, the backend, one bounded step.

Used by the OpenTofu probes (a throw-away stack; a protected stack's no-op plan) and by the
bake-off's plan loop. Every step runs in its own process group with a timeout; its output
is kept for the error message.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from chaoslib.exceptions import ActivityFailed

from flywheel_chaos import settings
from flywheel_chaos.s3.authority import CANARY_PREFIX, StateAuthority
from flywheel_chaos.s3.client import s3_client

__all__ = [
    "PLAN_ARGS",
    "STACK",
    "backend_config",
    "plan_outcome",
    "purge_prefix",
    "run_step",
    "step_failed",
    "tofu_binary",
    "tofu_env",
]

STACK: Final = """terraform {
  backend "s3" {}
}

resource "terraform_data" "probe" {
  input = "flywheel-chaos"
}

output "probe" {
  value = terraform_data.probe.output
}
"""
"""A stack of ``terraform_data`` only: no provider is downloaded."""


def tofu_binary(configuration: Mapping[str, Any] | None = None) -> str:
    """``tofu`` from configuration, FLYWHEEL_TOFU, PATH, or the lab's build cache."""
    for candidate in ((configuration or {}).get("tofu_binary"), settings.FLYWHEEL_TOFU.get()):
        if candidate and Path(candidate).exists():
            return str(candidate)
    found = shutil.which("tofu")
    if found:
        return found
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flywheel-chaos"
    built = sorted((cache / "bin").glob("*/tofu"))
    if built:
        return str(built[-1])
    raise ActivityFailed(
        "other: configuration: tofu is not installed (hint: run flywheel-chaos lab build, or set FLYWHEEL_TOFU)"
    )


def backend_config(authority: StateAuthority, key: str, endpoint_in_file: bool = True) -> str:
    """The S3 backend for a non-AWS endpoint (path style, the ``skip_*`` flags, lockfile).

    Without ``endpoint_in_file`` the endpoint comes from ``AWS_ENDPOINT_URL_S3`` at each run
    (:func:`tofu_env` sets it), so one initialized stack can be planned through another
    address (a proxy, a Service) without ``init`` again."""
    endpoint = [f'endpoints = {{ s3 = "{authority.endpoint}" }}'] if endpoint_in_file else []
    return "\n".join(
        [
            f'bucket = "{authority.bucket}"',
            f'key = "{key}"',
            f'region = "{authority.region}"',
            *endpoint,
            f"use_path_style = {'true' if authority.path_style else 'false'}",
            "skip_credentials_validation = true",
            "skip_region_validation = true",
            "skip_metadata_api_check = true",
            "skip_requesting_account_id = true",
            "use_lockfile = true",
            "",
        ]
    )


def tofu_env(authority: StateAuthority, workdir: Path) -> dict[str, str]:
    """The environment of a tofu step: no inherited ``TF_*``/``TOFU_*``, its own data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "TOFU_"))}
    env.update(
        TF_IN_AUTOMATION="1",
        CHECKPOINT_DISABLE="1",
        TF_DATA_DIR=str(workdir / ".tofu"),
        HOME=str(workdir),
        AWS_ENDPOINT_URL_S3=authority.endpoint,
    )
    if authority.access_key_id:
        env["AWS_ACCESS_KEY_ID"] = authority.access_key_id
        env["AWS_SECRET_ACCESS_KEY"] = authority.secret_access_key or ""
    return env


def run_step(
    argv: list[str], cwd: Path, env: Mapping[str, str], timeout_s: float, step: str
) -> tuple[int, str, float]:
    """Run one tofu step in its own process group; (exit code, output, seconds).

    At ``timeout_s`` the group gets SIGTERM, then SIGKILL after 5 s, and this raises
    ``ActivityFailed`` naming the step.
    """
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=grace)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        raise ActivityFailed(
            f"timeout: tofu {step}: no result in {timeout_s:g}s (hint: is the state authority answering?)"
        ) from exc
    return process.returncode, (output or "").strip(), round(time.monotonic() - started, 3)


def purge_prefix(authority: StateAuthority, prefix: str) -> None:
    """Remove every version under ``prefix`` (which must be under the canary prefix)."""
    if not prefix.startswith(CANARY_PREFIX):
        raise ActivityFailed(f"other: guard: refusing to purge {prefix!r} outside {CANARY_PREFIX}")
    client = s3_client(authority)
    listing = client.list_object_versions(Bucket=authority.bucket, Prefix=prefix)
    for item in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
        client.delete_object(Bucket=authority.bucket, Key=item["Key"], VersionId=item["VersionId"])


def step_failed(step: str, code: int, output: str, expected: str) -> ActivityFailed:
    """The failure of a step that did not exit as ``expected``, with its last lines."""
    lines = [line for line in output.splitlines() if line.strip()][-6:]
    return ActivityFailed(
        f"other: tofu-{step}: exit {code}, expected {expected}: {' | '.join(lines)} "
        "(hint: run the step by hand with the same backend config)"
    )


PLAN_ARGS: Final = ("plan", "-lock=false", "-refresh=false", "-detailed-exitcode", "-input=false")
"""A plan that never writes: no lock, no refresh, only the exit code says what it found."""
_PLAN_LINE = re.compile(r"Plan: (\d+) to add, (\d+) to change, (\d+) to destroy")
_FAILURE_CLASSES: Final = (
    ("no-such-bucket", ("NoSuchBucket", "S3 bucket does not exist")),
    ("access-denied", ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403")),
    ("unavailable", ("ServiceUnavailable", "SlowDown", "503")),
    ("timeout", ("timeout", "deadline exceeded", "Timeout")),
    (
        "endpoint-unreachable",
        (
            "connection refused",
            "connection reset",
            "request send failed",
            "dial tcp",
            "no such host",
            "broken pipe",
            "EOF",
        ),
    ),
)


def plan_outcome(code: int, output: str) -> dict[str, Any]:
    """What one ``tofu plan -detailed-exitcode`` saw: ``no-op`` (0), ``phantom`` (2: it wanted
    to create or change resources, so the state it read was empty or another version) with
    its counts, or ``failed`` (1) with an error class from its output."""
    if code == 0:
        return {"outcome": "no-op"}
    if code == 2:
        found = _PLAN_LINE.search(output)
        add, change, destroy = (int(g) for g in found.groups()) if found else (0, 0, 0)
        return {"outcome": "phantom", "add": add, "change": change, "destroy": destroy}
    lines = [line for line in output.splitlines() if line.strip()]
    error_class = next(
        (name for name, marks in _FAILURE_CLASSES if any(m in output for m in marks)), "other"
    )
    return {"outcome": "failed", "class": error_class, "last_line": (lines or [""])[-1][-300:]}
