"""``stack_noop_plan`` against a real OpenTofu (built by `lab build`) on a local-state stack."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from chaoslib.exceptions import ActivityFailed

from harness.lab.build import TOFU, build
from harness.lab.paths import bin_dir
from probes.tofu import stack_noop_plan

STACK = 'resource "terraform_data" "x" {\n  input = "%s"\n}\n'


@pytest.fixture(scope="module")
def tofu() -> str:
    build()  # cached: .ci/run builds before the tests
    path = bin_dir() / TOFU.binaries[0]
    assert path.exists()
    return str(path)


def test_a_stack_without_changes_plans_a_no_op_and_a_changed_one_is_refused(
    tofu: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_TOFU", tofu)
    monkeypatch.delenv("TF_CLI_CONFIG_FILE", raising=False)
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "main.tf").write_text(STACK % "one")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    for step in (["init", "-input=false"], ["apply", "-auto-approve", "-input=false"]):
        subprocess.run(
            [tofu, *step], cwd=stack, env=env, check=True, capture_output=True, timeout=120
        )
    result = stack_noop_plan(stack_dir=str(stack))
    assert result["plan_exit"] == 0
    (stack / "main.tf").write_text(STACK % "two")
    with pytest.raises(ActivityFailed, match="the plan has changes, so it is not a no-op"):
        stack_noop_plan(stack_dir=str(stack))


def test_a_missing_stack_directory_is_a_configuration_failure(tmp_path: Path) -> None:
    with pytest.raises(ActivityFailed, match=r"^other: configuration: no stack directory"):
        stack_noop_plan(stack_dir=str(tmp_path / "nope"))
