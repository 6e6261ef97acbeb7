"""OpenTofu in the loop, against a real SeaweedFS and the real tofu: what a plan sees when the
state key answers NoSuchKey (phantom plans: it would recreate everything) and when the
server only refuses connections (failed plans, no phantom)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flywheel_chaos.s3.authority import load_authority
from harness.controls.tofuloop import TofuLoop
from harness.lab.paths import bin_dir
from harness.lab.seaweed import SeaweedS3
from harness.lab.stack import seed_with_apply
from harness.lab.testing import require_binaries
from harness.record.verdict import decide
from tests.support.netfaults import Switch, header_stripping_proxy, switchable_proxy
from tests.support.s3kit import STATE_KEY

pytestmark = pytest.mark.s3
KEY = "stacks/loop/terraform.tfstate"


@pytest.fixture
def stack(seaweed: SeaweedS3, authority_env: dict[str, str], tmp_path: Path) -> Path:
    """A stack applied for real on the server: its state key holds three resources."""
    require_binaries("interim-seaweedfs")
    authority = load_authority(key=KEY)
    seed_with_apply(tmp_path, authority, bin_dir() / "tofu")
    return tmp_path / "stack"


def _loop_through(endpoint: str, stack: Path, tmp_path: Path, seconds: float) -> dict:  # type: ignore[type-arg]
    # the same initialized stack, planned through ``endpoint`` (AWS_ENDPOINT_URL_S3)
    authority = load_authority(endpoint=endpoint, key=KEY)
    loop = TofuLoop(stack, authority, pause_s=0.1)
    loop.start()
    time.sleep(seconds)
    return loop.stop()


def test_plans_of_the_applied_stack_are_no_ops(
    seaweed: SeaweedS3, stack: Path, tmp_path: Path
) -> None:
    summary = _loop_through(seaweed.endpoint, stack, tmp_path, 1.5)
    assert summary["no_op"] >= 2 and summary["failed"] == 0 and summary["phantom"] == 0


def test_a_state_key_answering_no_such_key_for_2_s_makes_phantom_plans_and_a_not_survived_run(
    seaweed: SeaweedS3, stack: Path, tmp_path: Path
) -> None:
    until = time.monotonic() + 2.0

    def gone(path: str) -> bool:
        return path.endswith(KEY) and time.monotonic() < until

    with header_stripping_proxy(
        seaweed.endpoint, seaweed.access_key, seaweed.secret_key, strip="", missing=gone
    ) as proxy:
        summary = _loop_through(proxy, stack, tmp_path, 3.5)
    assert summary["phantom"] >= 1, summary
    assert summary["first_phantom"]["add"] == 3  # it would have recreated every resource
    assert summary["no_op"] >= 1  # and planned no-ops again once the key was back
    heads = {"coverage": {"largest_gap_ms": 100.0}, "longest_outage_ms": 0.0, "recovered": True}
    effect = {
        "took_effect": True,
        "dry_run": False,
        "state_authority_pods": [],
        "node_fault_confirmed": [],
        "why": "x",
    }
    verdict, reasons = decide(
        {"status": "completed", "steady_states": {}},
        heads,
        [],
        None,
        effect=effect,
        tofu=summary,  # type: ignore[arg-type]
    )
    assert verdict == "not-survived"
    assert "would have recreated 3 resource(s)" in reasons[0]


def test_a_server_that_only_refuses_connections_makes_failed_plans_and_no_phantom(
    seaweed: SeaweedS3, stack: Path, tmp_path: Path
) -> None:
    switch = Switch()
    switch.up = False
    with switchable_proxy(seaweed.endpoint, switch) as proxy:
        summary = _loop_through(proxy, stack, tmp_path, 3.0)
    assert summary["failed"] >= 1 and summary["phantom"] == 0, summary
    assert summary["failure_classes"] == ["endpoint-unreachable"]
    assert STATE_KEY != KEY  # the suite's own state key is never touched
