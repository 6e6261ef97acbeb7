"""The gate's counting rules (pure logic over records written by the project's own writer)."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import ConfigError
from harness.record.evidence import new_record, verify, write_record
from harness.record.gate import (
    DEFAULT_POLICY,
    REPO,
    Requirement,
    _evidence_row,
    load_policy,
    policy_from,
    wilson_lower,
)

LIVE: dict[str, Any] = {
    "endpoint": "http://127.96.0.10:9000",
    "bucket": "tofu-state",
    "key": "gloriousflywheel/platform/terraform.tfstate",
    "harness_version": "0.2.0",
    "cluster": {"kube_system_uid": "uid-1", "api_server": "https://127.0.0.1:26443"},
    "workloads": [
        {
            "kind": "Deployment",
            "namespace": "nix-cache",
            "name": "attic-rustfs-openebs",
            "uid": "w-1",
            "replicas": 3,
            "template_sha256": "t-1",
            "images": ["sha256:aaa"],
        }
    ],
    "claims": [],
}
POD_RESTART = Requirement(
    "pod-restart", "pod restart survival", "experiment", "pod-delete", 5, 30.0, 60
)
EFFECT = {"took_effect": True, "dry_run": False, "why": "nix-cache/x deleted"}


def _run(
    directory: Path,
    verdict: str = "survived",
    fingerprint: dict[str, Any] | None = None,
    **extra: Any,
) -> None:
    fields: dict[str, Any] = {
        "fault": "pod-delete",
        "verdict": verdict,
        "reasons": ["HEAD answered NoSuchKey"] if verdict != "survived" else ["held"],
        "fingerprint": fingerprint or LIVE,
        "fault_effect": EFFECT,
        "prober": {"longest_outage_ms": 1200.0},
    }
    fields.update(extra)
    write_record(new_record(**fields), directory)


def _row(directory: Path, requirement: Requirement = POD_RESTART) -> Any:
    records = [v for v in verify(directory) if v.ok]
    return _evidence_row(requirement, records, LIVE, dt.datetime.now(dt.UTC))


def test_four_not_survived_then_one_survived_is_failed_and_names_them(tmp_path: Path) -> None:
    for _ in range(4):
        _run(tmp_path, "not-survived")
    _run(tmp_path, "survived")
    row = _row(tmp_path)
    assert row.status == "failed"
    assert row.detail.startswith("1/5 survived (not-survived at ")
    assert row.detail.count("not-survived at") == 4
    assert "HEAD answered NoSuchKey" in row.detail


def test_five_survived_in_a_row_is_proven_with_a_wilson_bound(tmp_path: Path) -> None:
    for _ in range(5):
        _run(tmp_path)
    row = _row(tmp_path)
    assert row.status == "proven" and row.detail.startswith("5/5 survived")
    assert row.survival_lower_bound == pytest.approx(wilson_lower(5, 5))
    assert "survival rate >= 57%" in row.detail


def test_a_run_over_the_policy_outage_budget_fails_the_row(tmp_path: Path) -> None:
    for _ in range(4):
        _run(tmp_path)
    _run(tmp_path, prober={"longest_outage_ms": 61_000.0})
    row = _row(tmp_path)
    assert row.status == "failed" and "exceeds the policy budget 60 s" in row.detail


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            {"endpoint": "http://127.96.0.99:9000"},
            "endpoint http://127.96.0.99:9000 -> http://127.96.0.10:9000",
        ),
        ("image", "Deployment attic-rustfs-openebs image digest changed"),
        ("replicas", "Deployment attic-rustfs-openebs replicas 1 -> 3"),
        ({"cluster": {"kube_system_uid": "uid-2", "api_server": "x"}}, "another cluster"),
    ],
)
def test_a_run_against_another_target_is_not_counted_and_stale_says_what_changed(
    tmp_path: Path, change: Any, said: str
) -> None:
    other = copy.deepcopy(LIVE)
    if change == "image":
        other["workloads"][0]["images"] = ["sha256:old"]
    elif change == "replicas":
        other["workloads"][0]["replicas"] = 1
    else:
        other.update(change)
    _run(tmp_path, fingerprint=other)
    for _ in range(4):
        _run(tmp_path)
    row = _row(tmp_path)
    assert row.status == "stale"
    assert row.detail.startswith("4/5 survived: ") and said in row.detail
    assert "4 run(s) match the live target" in row.detail


def test_v1_records_dry_runs_and_runs_without_proof_are_never_counted(tmp_path: Path) -> None:
    for _ in range(4):
        _run(tmp_path)
    _run(tmp_path, schema="flywheel-chaos/evidence/v1")
    _run(tmp_path, dry_run=True)
    _run(tmp_path, fault_effect={"took_effect": False, "dry_run": False, "why": "no pod"})
    row = _row(tmp_path)
    assert row.status == "unproven"
    assert "1 more run(s) needed" in row.detail
    assert "3 not counted (dry run, no proof the fault took effect, schema v1)" in row.detail


def test_old_runs_do_not_count(tmp_path: Path) -> None:
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=40)).isoformat()
    for _ in range(5):
        _run(tmp_path, recorded_at=old)
    row = _row(tmp_path)
    assert row.status == "unproven" and row.detail == "no run younger than 30 days"


def test_the_wilson_bound_is_the_known_value() -> None:
    assert wilson_lower(0, 0) is None
    assert wilson_lower(5, 7) == pytest.approx(0.3589, abs=1e-3)
    assert wilson_lower(10, 10) == pytest.approx(0.7225, abs=1e-3)


def test_the_repository_policy_is_the_built_in_one() -> None:
    assert yaml.safe_load((REPO / "gate.yaml").read_text()) == DEFAULT_POLICY
    policy = load_policy(REPO / "gate.yaml")
    runs = {r.name: r.runs for r in policy.requirements}
    assert runs["pod-restart"] == 5 and runs["backup-restore"] == 1


def test_an_invalid_policy_is_a_configuration_error_naming_where(tmp_path: Path) -> None:
    bad = copy.deepcopy(DEFAULT_POLICY)
    bad["requirements"]["pod-restart"]["runs"] = 0
    with pytest.raises(ConfigError) as error:
        policy_from(bad, "bad.yaml")
    assert "requirements/pod-restart/runs" in error.value.cause
    with pytest.raises(ConfigError):
        load_policy(tmp_path / "missing.yaml")
