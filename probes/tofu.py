"""Chaos Toolkit probes that run OpenTofu against the state authority.

``disposable_stack_noop_plan`` proves the design note's "no-op OpenTofu plan"
and the lockfile behaviour on a throw-away stack (only ``terraform_data``, so
no provider is downloaded) whose state lives under a scratch key in the
harness's prefix, never the protected key; everything it wrote is removed.
``stack_noop_plan`` plans an existing stack directory and never applies.
"""

import json
import os
import tempfile
import uuid
from pathlib import Path

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from flywheel_chaos import settings
from flywheel_chaos.results import Result
from flywheel_chaos.s3.authority import CANARY_PREFIX, StateAuthority
from flywheel_chaos.s3.client import activity_authority, call_with_retries
from flywheel_chaos.tofu import (
    STACK,
    backend_config,
    purge_prefix,
    run_step,
    step_failed,
    tofu_binary,
    tofu_env,
)

__all__ = ["disposable_stack_noop_plan", "stack_noop_plan"]


def _plant_foreign_lock(authority: StateAuthority, key: str) -> None:
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
        (workdir / "backend.s3.tfbackend").write_text(backend_config(authority, key))
        env = tofu_env(authority, workdir)

        def step(name: str, *args: str, expect: int = 0, meaning: str = "0") -> str:
            code, out, timings[f"{name}_s"] = run_step(
                [tofu, *args, "-no-color"], workdir, env, step_timeout_s, name
            )
            codes[name] = code
            if code != expect:
                raise step_failed(name, code, out, meaning)
            return out

        codes: dict[str, int] = {}
        try:
            step("init", "init", "-input=false", "-backend-config=backend.s3.tfbackend")
            step("apply", "apply", "-auto-approve", "-input=false")
            outputs = step("output", "output", "-json")
            if json.loads(outputs or "{}").get("probe", {}).get("value") != "flywheel-chaos":
                raise step_failed("output", 0, outputs, "the applied output read back")
            step("plan", "plan", "-detailed-exitcode", "-input=false", meaning="0 (a no-op plan)")
            _plant_foreign_lock(authority, key)
            locked = step(
                "locked_plan",
                "plan",
                "-lock-timeout=1s",
                "-input=false",
                expect=1,
                meaning="1 (the state is locked by someone else)",
            )
            if "lock" not in locked.lower():
                raise step_failed("locked_plan", 1, locked, "an error naming the lock")
        finally:
            purge_prefix(authority, prefix)
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
    directory = stack_dir or settings.from_config(
        configuration, "tofu_stack_dir", settings.TOFU_STACK_DIR
    )
    if not directory or not Path(directory).is_dir():
        raise ActivityFailed(
            f"other: configuration: no stack directory {directory!r} (hint: set TOFU_STACK_DIR)"
        )
    tofu = tofu_binary(configuration)
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}  # the stack's own
    cwd = Path(directory)
    code, out, init_s = run_step(
        [tofu, "init", "-input=false", "-no-color"], cwd, env, step_timeout_s, "init"
    )
    if code != 0:
        raise step_failed("init", code, out, "0")
    code, out, plan_s = run_step(
        [tofu, "plan", "-detailed-exitcode", "-lock=false", "-input=false", "-no-color"],
        cwd,
        env,
        step_timeout_s,
        "plan",
    )
    if code == 2:
        raise step_failed("plan", code, out, "0: the plan has changes, so it is not a no-op")
    if code != 0:
        raise step_failed("plan", code, out, "0")
    return {"stack_dir": str(cwd), "plan_exit": code, "init_s": init_s, "plan_s": plan_s}
