"""The lab's protected OpenTofu stack: real state in the state key, so a plan of it is a no-op.

``lab up`` seeds the state key by ``tofu apply`` of a small stack of ``terraform_data``
resources (no provider to download) whose S3 backend is the state key; the stack directory
stays initialized in ``<lab>/stack``, for the bake-off's plan loop
(``FLYWHEEL_TOFU_PLAN_STACK``), which only ever plans it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from flywheel_chaos.s3.authority import StateAuthority
from flywheel_chaos.tofu import backend_config, run_step, step_failed, tofu_env
from harness.errors import HarnessError

RESOURCES: Final = ("network", "cluster", "state-authority")
STACK_TF: Final = 'terraform {\n  backend "s3" {}\n}\n\n' + "".join(
    f'resource "terraform_data" "{name}" {{\n  input = "gloriousflywheel-{name}"\n}}\n\n'
    for name in RESOURCES
)
STEP_TIMEOUT_S: Final = 120.0


def stack_dir(root: Path) -> Path:
    return root / "stack"


def write_stack(root: Path, authority: StateAuthority) -> Path:
    """The stack's files (its backend is ``authority``'s state key)."""
    directory = stack_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.tf").write_text(STACK_TF)
    # the endpoint comes from AWS_ENDPOINT_URL_S3 at each run: the same initialized stack
    # can be planned through a proxy or another Service address
    config = backend_config(authority, authority.key, endpoint_in_file=False)
    (directory / "backend.s3.tfbackend").write_text(config)
    return directory


def seed_with_apply(root: Path, authority: StateAuthority, tofu: Path) -> None:
    """``tofu init`` and ``tofu apply`` of the stack: the state key then holds real state."""
    directory = write_stack(root, authority)
    env = tofu_env(authority, directory)
    for step, args in (
        ("init", ["init", "-input=false", "-backend-config=backend.s3.tfbackend"]),
        ("apply", ["apply", "-auto-approve", "-input=false"]),
    ):
        code, output, _ = run_step(
            [str(tofu), *args, "-no-color"], directory, env, STEP_TIMEOUT_S, step
        )
        if code != 0:
            failure = step_failed(step, code, output, "0")
            raise HarnessError(
                f"seeding the state key with tofu {step} failed",
                str(failure),
                details=output[-2000:],
            )


def init_only(root: Path, authority: StateAuthority, tofu: Path) -> None:
    """``tofu init`` of the stack (kept data: the state key already holds its state)."""
    directory = write_stack(root, authority)
    code, output, _ = run_step(
        [str(tofu), "init", "-input=false", "-backend-config=backend.s3.tfbackend", "-no-color"],
        directory,
        tofu_env(authority, directory),
        STEP_TIMEOUT_S,
        "init",
    )
    if code != 0:
        raise HarnessError(
            "tofu init of the lab's stack failed", "see the details", details=output[-2000:]
        )
