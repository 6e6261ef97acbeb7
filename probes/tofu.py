"""Chaos Toolkit probes that run OpenTofu against the state authority.

``disposable_stack_noop_plan`` proves the design note's "no-op OpenTofu plan"
and the lockfile behaviour on a throw-away stack (only ``terraform_data``, so
no provider is downloaded) whose state lives under a scratch key in the
harness's prefix, never the protected key; everything it wrote is removed.
``stack_noop_plan`` plans an existing stack directory and never applies.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict  # noqa: UP035 - chaos discover types only typing.Dict as "mapping"

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from probes.s3client import (
    CANARY_PREFIX,
    StateAuthority,
    activity_authority,
    call_with_retries,
    s3_client,
)

Result = Dict[str, Any]  # noqa: UP006

__all__ = ["disposable_stack_noop_plan", "stack_noop_plan"]

STACK = """terraform {
  backend "s3" {}
}

resource "terraform_data" "probe" {
  input = "flywheel-chaos"
}

output "probe" {
  value = terraform_data.probe.output
}
"""


def tofu_binary(configuration: Configuration = None) -> str:
    """``tofu`` from configuration, FLYWHEEL_TOFU, PATH, or the lab's build cache."""
    for candidate in ((configuration or {}).get("tofu_binary"), os.environ.get("FLYWHEEL_TOFU")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    found = shutil.which("tofu")
    if found:
        return found
    cache = (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flywheel-chaos" / "bin"
    )
    built = sorted(cache.glob("*/tofu"))
    if built:
        return str(built[-1])
    raise ActivityFailed(
        "other: configuration: tofu is not installed (hint: run flywheel-chaos lab build, or set FLYWHEEL_TOFU)"
    )


def _backend_config(authority: StateAuthority, key: str) -> str:
    return "\n".join(
        [
            f'bucket = "{authority.bucket}"',
            f'key = "{key}"',
            f'region = "{authority.region}"',
            f'endpoints = {{ s3 = "{authority.endpoint}" }}',
            f"use_path_style = {'true' if authority.path_style else 'false'}",
            "skip_credentials_validation = true",
            "skip_region_validation = true",
            "skip_metadata_api_check = true",
            "skip_requesting_account_id = true",
            "use_lockfile = true",
            "",
        ]
    )


def _env(authority: StateAuthority, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "TOFU_"))}
    env.update(
        TF_IN_AUTOMATION="1",
        CHECKPOINT_DISABLE="1",
        TF_DATA_DIR=str(workdir / ".tofu"),
        HOME=str(workdir),
    )
    if authority.access_key_id:
        env["AWS_ACCESS_KEY_ID"] = authority.access_key_id
        env["AWS_SECRET_ACCESS_KEY"] = authority.secret_access_key or ""
    return env


def _run(
    argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float, step: str
) -> tuple[int, str, float]:
    started = time.monotonic()
    try:
        result = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ActivityFailed(
            f"timeout: tofu {step}: no result in {timeout_s:g}s (hint: is the state authority answering?)"
        ) from exc
    output = (result.stdout + result.stderr).strip()
    return result.returncode, output, round(time.monotonic() - started, 3)


def _purge_prefix(authority: StateAuthority, prefix: str) -> None:
    if not prefix.startswith(CANARY_PREFIX):
        raise ActivityFailed(f"other: guard: refusing to purge {prefix!r} outside {CANARY_PREFIX}")
    client = s3_client(authority)
    listing = client.list_object_versions(Bucket=authority.bucket, Prefix=prefix)
    for item in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
        client.delete_object(Bucket=authority.bucket, Key=item["Key"], VersionId=item["VersionId"])


def _fail(step: str, code: int, output: str, expected: str) -> ActivityFailed:
    lines = [line for line in output.splitlines() if line.strip()][-6:]
    return ActivityFailed(
        f"other: tofu-{step}: exit {code}, expected {expected}: {' | '.join(lines)} (hint: run the step by hand with the same backend config)"
    )


def disposable_stack_noop_plan(
    step_timeout_s: float = 120.0,
    bucket: str = "",
    endpoint: str = "",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Prove a no-op plan and lock contention on a throw-away stack whose state is on the authority.

    In a temporary directory: ``tofu init`` with an S3 backend
    (``use_path_style``, the ``skip_*`` flags, ``use_lockfile = true``) and a
    scratch key under ``_flywheel-chaos/``; ``apply``; ``output -json``
    read back; ``plan -detailed-exitcode`` must exit 0. Then a foreign
    ``<key>.tflock`` is planted and ``plan -lock-timeout=1s`` must exit 1.
    Everything under the scratch prefix is removed afterwards. Returns the
    step timings and exit codes. Raises ``ActivityFailed`` naming the step
    that did not behave.
    """
    authority = activity_authority(endpoint, bucket, "", 5.0, configuration, secrets)
    tofu = tofu_binary(configuration)
    prefix = f"{CANARY_PREFIX}tofu/{uuid.uuid4().hex}/"
    key = prefix + "terraform.tfstate"
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="flywheel-tofu-") as tmp:
        workdir = Path(tmp)
        (workdir / "main.tf").write_text(STACK)
        (workdir / "backend.s3.tfbackend").write_text(_backend_config(authority, key))
        env = _env(authority, workdir)

        def step(name: str, *args: str, expect: int = 0, meaning: str = "0") -> str:
            code, out, timings[f"{name}_s"] = _run(
                [tofu, *args, "-no-color"], workdir, env, step_timeout_s, name
            )
            codes[name] = code
            if code != expect:
                raise _fail(name, code, out, meaning)
            return out

        codes: dict[str, int] = {}
        try:
            step("init", "init", "-input=false", "-backend-config=backend.s3.tfbackend")
            step("apply", "apply", "-auto-approve", "-input=false")
            outputs = step("output", "output", "-json")
            if json.loads(outputs or "{}").get("probe", {}).get("value") != "flywheel-chaos":
                raise _fail("output", 0, outputs, "the applied output read back")
            step("plan", "plan", "-detailed-exitcode", "-input=false", meaning="0 (a no-op plan)")
            lock = {
                "ID": str(uuid.uuid4()),
                "Operation": "OperationTypeApply",
                "Who": "someone-else@elsewhere",
                "Version": "1.12.6",
                "Created": "2026-01-01T00:00:00Z",
                "Path": f"{authority.bucket}/{key}",
            }
            call_with_retries(
                authority,
                "plant-foreign-lock",
                lambda c: c.put_object(
                    Bucket=authority.bucket,
                    Key=key + ".tflock",
                    Body=json.dumps(lock).encode(),
                    IfNoneMatch="*",
                ),
            )
            locked = step(
                "locked_plan",
                "plan",
                "-lock-timeout=1s",
                "-input=false",
                expect=1,
                meaning="1 (the state is locked by someone else)",
            )
            if "lock" not in locked.lower():
                raise _fail("locked_plan", 1, locked, "an error naming the lock")
        finally:
            _purge_prefix(authority, prefix)
    return {
        "state_key": key,
        "plan_exit": codes["plan"],
        "locked_plan_exit": codes["locked_plan"],
        **timings,
    }


def stack_noop_plan(
    stack_dir: str = "",
    step_timeout_s: float = 300.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Check that ``tofu plan`` of an existing stack is a no-op (it never applies).

    ``stack_dir`` defaults to ``tofu_stack_dir`` in the configuration or
    ``TOFU_STACK_DIR``. Runs ``tofu init -input=false`` then ``tofu plan
    -detailed-exitcode -lock=false``. Returns the exit code and timings.
    Raises ``ActivityFailed`` when the plan has changes (exit 2) or fails.
    """
    directory = (
        stack_dir
        or (configuration or {}).get("tofu_stack_dir")
        or os.environ.get("TOFU_STACK_DIR", "")
    )
    if not directory or not Path(directory).is_dir():
        raise ActivityFailed(
            f"other: configuration: no stack directory {directory!r} (hint: set TOFU_STACK_DIR)"
        )
    tofu = tofu_binary(configuration)
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    cwd = Path(directory)
    code, out, init_s = _run(
        [tofu, "init", "-input=false", "-no-color"], cwd, env, step_timeout_s, "init"
    )
    if code != 0:
        raise _fail("init", code, out, "0")
    code, out, plan_s = _run(
        [tofu, "plan", "-detailed-exitcode", "-lock=false", "-input=false", "-no-color"],
        cwd,
        env,
        step_timeout_s,
        "plan",
    )
    if code == 2:
        raise _fail("plan", code, out, "0: the plan has changes, so it is not a no-op")
    if code != 0:
        raise _fail("plan", code, out, "0")
    return {"stack_dir": str(cwd), "plan_exit": code, "init_s": init_s, "plan_s": plan_s}
