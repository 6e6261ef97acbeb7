"""The gate's counting rules and policy floors (pure logic over records written by the
project's own writer; the live facts are given as data)."""

from __future__ import annotations

import copy
import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import ConfigError
from harness.record.counting import judge
from harness.record.evidence import new_record, verify, write_record
from harness.record.gate import GateReport, _evidence_row, _posture_rows, _trust, wilson_lower
from harness.record.policy import (
    FLOORS,
    Requirement,
    load_policy,
    policy_from,
    shipped_policy,
    validated_max_age,
)
from harness.record.posture import unknown_claims
from harness.record.verdict import RULES_VERSION

WORKLOAD = "w-1"
LIVE: dict[str, Any] = {
    "endpoint": "http://127.96.0.10:9000",
    "bucket": "tofu-state",
    "key": "gloriousflywheel/platform/terraform.tfstate",
    "cluster": {"kube_system_uid": "uid-1", "api_server": "https://127.0.0.1:26443"},
    "workloads": [
        {
            "kind": "Deployment",
            "namespace": "nix-cache",
            "name": "attic-rustfs-openebs",
            "uid": WORKLOAD,
            "replicas": 3,
            "template_sha256": "t-1",
            "images": ["sha256:aaa"],
        }
    ],
    "claims": [],
}
SHIPPED = yaml.safe_load(shipped_policy().read_text())
POLICY = policy_from(SHIPPED, "shipped")
POD_RESTART = next(r for r in POLICY.requirements if r.name == "pod-restart")
NODE_LOSS = next(r for r in POLICY.requirements if r.name == "node-unavailability")
NO_OP_PLAN = next(r for r in POLICY.requirements if r.name == "no-op-plan")


def _delete_action(owner: str = WORKLOAD, **changes: Any) -> dict[str, Any]:
    action = {
        "name": "delete-state-authority-pod",
        "status": "succeeded",
        "provider": {"type": "python", "module": "actions.pods", "func": "delete_state_authority_pods"},
        "output": {
            "namespace": "nix-cache",
            "deleted": [{"name": "attic-rustfs-openebs-abc", "uid": "p-1", "owner_uids": ["rs-1", owner]}],
            "dry_run": False,
        },
    }  # fmt: skip
    action.update(changes)
    return action


def _node_action(ran_authority: bool = True, **changes: Any) -> dict[str, Any]:
    owners = ["rs-1", WORKLOAD] if ran_authority else ["rs-9", "other-app"]
    action = {
        "name": "make-bumble-unavailable",
        "status": "succeeded",
        "provider": {"type": "python", "module": "actions.nodes", "func": "make_node_unavailable"},
        "output": {
            "node": "bumble", "method": "kubelet-stop", "dry_run": False, "confirmed": True,
            "confirmation": "bumble Ready=Unknown after 11.0 s",
            "displaced_pods": [{"pod": "nix-cache/attic-rustfs-openebs-abc", "uid": "p-1",
                                "node": "bumble", "owner_uids": owners}],
        },
    }  # fmt: skip
    action.update(changes)
    return action


def _run(
    directory: Path,
    verdict: str = "survived",
    fault: str = "pod-delete",
    actions: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> None:
    fields: dict[str, Any] = {
        "fault": fault,
        "rules_version": RULES_VERSION,
        "verdict": verdict,
        "reasons": ["HEAD answered NoSuchKey"] if verdict != "survived" else ["held"],
        "fingerprint": LIVE,
        "fault_actions": actions if actions is not None else [_delete_action()],
        "prober": {"longest_outage_ms": 1200.0, "coverage": {"largest_gap_ms": 150.0}},
    }
    fields.update(extra)
    write_record(new_record(**fields), directory)


def _row(directory: Path, requirement: Requirement = POD_RESTART) -> Any:
    records = [v for v in verify(directory) if v.ok]
    return _evidence_row(requirement, records, LIVE, dt.datetime.now(dt.UTC))


# ------------------------------------------------------------------- windows ---


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


def test_twenty_failures_then_five_survived_runs_do_not_retry_into_green(tmp_path: Path) -> None:
    for _ in range(20):
        _run(tmp_path, "not-survived")
    for _ in range(5):
        _run(tmp_path)
    row = _row(tmp_path)
    assert row.status == "failed"
    assert "Wilson 95 % lower bound 9%" in row.detail and "below the policy's 50%" in row.detail


def test_a_drain_that_raised_counts_as_a_failure_not_a_gap(tmp_path: Path) -> None:
    for _ in range(5):
        _run(tmp_path)
    raised = _delete_action(status="failed", error="ActivityFailed: drain did not finish")
    raised.pop("output")
    _run(tmp_path, "error", actions=[raised])
    row = _row(tmp_path)
    assert row.status == "failed" and "error at" in row.detail


def test_a_run_refused_before_its_fault_changed_anything_is_not_counted(tmp_path: Path) -> None:
    for _ in range(5):
        _run(tmp_path)
    refused = _delete_action(
        status="failed", error="flywheel_chaos.kube.safety.SafetyRefusal: refused: not allowlisted"
    )
    _run(tmp_path, "error", actions=[refused])
    assert _row(tmp_path).status == "proven"


def test_a_failing_run_against_an_unreadable_target_blocks_green_and_is_named(
    tmp_path: Path,
) -> None:
    for _ in range(5):
        _run(tmp_path)
    _run(tmp_path, "not-survived", fingerprint={**LIVE, "error": "reading nix-cache: 403"})
    row = _row(tmp_path)
    assert row.status == "failed" and "failed against a target that could not be read" in row.detail


def test_a_run_over_the_policy_outage_budget_fails_the_row(tmp_path: Path) -> None:
    for _ in range(4):
        _run(tmp_path)
    _run(tmp_path, prober={"longest_outage_ms": 61_000.0, "coverage": {"largest_gap_ms": 100.0}})
    row = _row(tmp_path)
    assert row.status == "failed" and "exceeds the policy budget 60 s" in row.detail


@pytest.mark.parametrize(
    ("prober", "said"),
    [
        (None, "no prober summary"),
        ({}, "the longest outage is not a number (None)"),
        ({"longest_outage_ms": float("nan"), "coverage": {"largest_gap_ms": 1}}, "not a number"),
        ({"longest_outage_ms": "0", "coverage": {"largest_gap_ms": 1}}, "not a number ('0')"),
        ({"longest_outage_ms": 10.0, "coverage": {"largest_gap_ms": 118_000.0}}, "118000 ms unwatched"),
        ({"longest_outage_ms": 10.0}, "coverage is unknown"),
    ],
)  # fmt: skip
def test_a_survived_record_whose_measurement_cannot_be_trusted_fails(
    tmp_path: Path, prober: Any, said: str
) -> None:
    for _ in range(4):
        _run(tmp_path)
    _run(tmp_path, prober=prober)
    row = _row(tmp_path)
    assert row.status == "failed" and said in row.detail


def test_an_experiment_recorded_passed_is_not_survived(tmp_path: Path) -> None:
    for _ in range(4):
        _run(tmp_path)
    _run(tmp_path, "passed")
    assert _row(tmp_path).status == "failed"


# ------------------------------------------------------------ fault effect ---


def test_deleting_another_apps_pod_in_the_namespace_proves_nothing(tmp_path: Path) -> None:
    for _ in range(5):
        _run(tmp_path, actions=[_delete_action(owner="someone-elses-deployment")])
    row = _row(tmp_path)
    assert row.status == "failed"
    assert "does not show the fault took effect" in row.detail


def test_a_node_fault_on_a_node_that_ran_no_authority_pod_proves_nothing(tmp_path: Path) -> None:
    for _ in range(5):
        _run(tmp_path, fault="node-unavailable", actions=[_node_action(ran_authority=False)])
    assert _row(tmp_path, NODE_LOSS).status == "failed"
    for _ in range(5):
        _run(tmp_path, fault="node-unavailable", actions=[_node_action()])
    # the last five proved it, but five of ten counted runs proved nothing: not green yet
    row = _row(tmp_path, NODE_LOSS)
    assert row.status == "failed" and "below the policy's 50%" in row.detail


def test_any_other_action_saying_confirmed_proves_nothing(tmp_path: Path) -> None:
    impostor = {
        "name": "looks-like-a-fault",
        "status": "succeeded",
        "provider": {"type": "python", "module": "json", "func": "loads"},
        "output": {"confirmed": True, "confirmation": "trust me"},
    }
    for _ in range(5):
        _run(tmp_path, fault="node-unavailable", actions=[impostor])
    records = [v for v in verify(tmp_path) if v.ok]
    judged = judge(records[0], NODE_LOSS, LIVE, dt.datetime.now(dt.UTC))
    # the fault's own action never ran: nothing began, so nothing counts either way
    assert judged is not None and judged.status == "excluded"
    assert _row(tmp_path, NODE_LOSS).status == "unproven"


def test_a_proof_with_no_step_or_a_missing_step_fails(tmp_path: Path) -> None:
    _run(tmp_path, "passed", fault="tofu-noop-plan", kind="proof", proof_steps=[])
    row = _row(tmp_path, NO_OP_PLAN)
    assert row.status == "failed" and "ran no step" in row.detail
    step = {
        "name": "x",
        "status": "succeeded",
        "provider": {"module": "probes.tofu", "func": "disposable_stack_noop_plan"},
    }
    _run(tmp_path, "passed", fault="tofu-noop-plan", kind="proof", proof_steps=[step])
    assert _row(tmp_path, NO_OP_PLAN).status == "proven"


# ------------------------------------------------------------ stale and time ---


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
    for _ in range(5):
        _run(tmp_path, fingerprint=other)
    row = _row(tmp_path)
    assert row.status == "stale" and said in row.detail


def test_a_patch_release_keeps_the_evidence_and_new_verdict_rules_make_it_stale(
    tmp_path: Path,
) -> None:
    for _ in range(5):
        _run(tmp_path, harness_version="0.2.1")  # another release, the same rules
    assert _row(tmp_path).status == "proven"
    for _ in range(5):
        _run(tmp_path, rules_version=RULES_VERSION - 1)
    assert _row(tmp_path).status == "proven"  # the older rules' runs are stale, not counted
    other = tmp_path / "old-rules"
    for _ in range(5):
        _run(other, rules_version=RULES_VERSION - 1)
    row = _row(other)
    assert row.status == "stale" and f"verdict rules {RULES_VERSION - 1}" in row.detail


def test_v1_records_and_dry_runs_are_never_counted(tmp_path: Path) -> None:
    for _ in range(4):
        _run(tmp_path)
    _run(tmp_path, schema="flywheel-chaos/evidence/v1")
    _run(tmp_path, dry_run=True)
    row = _row(tmp_path)
    assert row.status == "unproven"
    assert "1 more run(s) needed" in row.detail
    assert "2 not counted (dry run, schema v1)" in row.detail


def test_old_runs_do_not_count(tmp_path: Path) -> None:
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=40)).isoformat()
    for _ in range(5):
        _run(tmp_path, recorded_at=old)
    row = _row(tmp_path)
    assert row.status == "unproven" and row.detail == "no run younger than 30 days"


@pytest.mark.parametrize(
    ("recorded_at", "said"),
    [
        ((dt.datetime.now(dt.UTC) + dt.timedelta(days=365)).isoformat(), "is in the future"),
        (dt.datetime.now().replace(microsecond=0).isoformat(), "has no offset"),
    ],
    ids=["a year ahead", "no offset"],  # stable ids: every test worker collects the same tests
)
def test_a_record_from_the_future_or_without_an_offset_blocks_the_row_without_a_crash(
    tmp_path: Path, recorded_at: str, said: str
) -> None:
    from harness.record.evidence import Verified

    for _ in range(5):
        _run(tmp_path)
    good = [v for v in verify(tmp_path) if v.ok]
    # the schema refuses such a time at write and at verify; the gate checks it again
    odd = Verified(tmp_path / "odd.json", {**(good[-1].record or {}), "recorded_at": recorded_at})
    judged = judge(odd, POD_RESTART, LIVE, dt.datetime.now(dt.UTC))
    assert judged is not None and judged.status == "blocking" and said in judged.why
    row = _evidence_row(POD_RESTART, [*good, odd], LIVE, dt.datetime.now(dt.UTC))
    assert row.status == "failed" and said in row.detail


def test_the_wilson_bound_is_the_known_value() -> None:
    assert wilson_lower(0, 0) is None
    assert wilson_lower(5, 7) == pytest.approx(0.3589, abs=1e-3)
    assert wilson_lower(10, 10) == pytest.approx(0.7225, abs=1e-3)
    assert wilson_lower(5, 25) == pytest.approx(0.0886, abs=1e-3)


# ------------------------------------------------------------------- policy ---


def test_the_shipped_policy_is_at_the_floors_and_says_its_digest() -> None:
    policy = load_policy()
    assert policy.weaker == ()
    assert len(policy.sha256) == 64
    effective = policy.effective()["requirements"]
    assert effective["pod-restart"]["runs"] == FLOORS.runs["experiment"] == 5
    assert effective["pod-restart"]["min_survival_lower_bound"] == 0.5


def test_a_gate_yaml_in_the_working_directory_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weak = copy.deepcopy(SHIPPED)
    weak["defaults"]["runs"] = 1
    (tmp_path / "gate.yaml").write_text(yaml.safe_dump(weak))
    monkeypatch.chdir(tmp_path)
    assert load_policy().source == str(shipped_policy().resolve())
    assert load_policy().weaker == ()


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (lambda p: p["requirements"].pop("node-unavailability"), "node-unavailability is missing"),
        (lambda p: p["requirements"].update({"pod-restart": {"fault": "guard", "kind": "guard", "runs": 1}}),
         "pod-restart is proven by guard 'guard', not experiment 'pod-delete'"),
        (lambda p: p["defaults"].update(runs=1), "pod-restart needs 1 run(s), fewer than the floor 5"),
        (lambda p: p["requirements"]["node-maintenance"].update(outage_budget_s=1e9),
         "node-maintenance allows a 1000000000.0 s outage"),
        (lambda p: p["posture"].update(min_ready_endpoints=1), "posture min_ready_endpoints is 1"),
        (lambda p: p["defaults"].update(max_age_days=365), "accepts evidence 365 days old"),
        (lambda p: p["defaults"].update(min_survival_lower_bound=0.1), "survival lower bound of 0.1"),
    ],
)  # fmt: skip
def test_a_weaker_or_incomplete_policy_names_each_floor_it_breaks(edit: Any, said: str) -> None:
    weak = copy.deepcopy(SHIPPED)
    edit(weak)
    policy = policy_from(weak, "weak.yaml")
    assert any(said in w for w in policy.weaker), policy.weaker
    report = GateReport(rules=policy)
    assert report.weaker_policy and not report.proven


def test_a_stricter_policy_is_fine() -> None:
    strict = copy.deepcopy(SHIPPED)
    strict["defaults"].update(runs=10, max_age_days=7, min_survival_lower_bound=0.7)
    strict["requirements"]["pod-restart"]["outage_budget_s"] = 5
    assert policy_from(strict, "strict.yaml").weaker == ()


@pytest.mark.parametrize("days", [float("inf"), float("nan"), 0.0, -1.0])
def test_max_age_must_be_a_finite_number_of_days(days: float) -> None:
    with pytest.raises(ConfigError, match="is not a number of days above 0"):
        validated_max_age(days)
    assert "older than 30" in " ".join(policy_from(SHIPPED, "x", 60.0).weaker)


def test_an_invalid_policy_is_a_configuration_error_naming_where(tmp_path: Path) -> None:
    bad = copy.deepcopy(SHIPPED)
    bad["requirements"]["pod-restart"]["runs"] = 0
    with pytest.raises(ConfigError) as error:
        policy_from(bad, "bad.yaml")
    assert "requirements/pod-restart/runs" in error.value.cause
    with pytest.raises(ConfigError):
        load_policy(tmp_path / "missing.yaml")


# -------------------------------------------------------------------- trust ---


def test_without_a_public_key_the_gate_is_unsigned_and_never_green(tmp_path: Path) -> None:
    _run(tmp_path)
    unsigned, _ = _trust(verify(tmp_path), None)
    assert any("no public key" in u for u in unsigned)
    assert any("1 record(s) are unsigned" in u for u in unsigned)
    report = GateReport(rules=POLICY, unsigned=unsigned)
    assert not report.proven


def test_a_chain_that_mixes_signed_and_unsigned_records_is_named(tmp_path: Path) -> None:
    from harness.record.signing import Signer, generate, load_signer

    private, _ = generate(tmp_path / "keys")
    signer = load_signer(str(private))
    assert isinstance(signer, Signer)
    _run(tmp_path / "ev")
    write_record(new_record(fault="pod-delete", verdict="survived"), tmp_path / "ev", signer=signer)
    _, problems = _trust(verify(tmp_path / "ev"), None)
    assert problems and "mixes signed and unsigned records: 1 unsigned" in problems[0]


# ------------------------------------------------------------------ posture ---


@pytest.mark.parametrize(
    ("claim", "said"),
    [
        ({"name": "data-x", "missing": True}, "data-x is missing"),
        ({"name": "data-x", "phase": "Pending", "pinned_nodes": []}, "data-x is Pending"),
        ({"name": "data-x", "phase": "Bound", "volume": "pv-x", "pinned_nodes": []},
         "data-x's volume pv-x has no node affinity"),
    ],
)  # fmt: skip
def test_a_claim_missing_pending_or_unpinned_leaves_the_data_rows_unproven(
    claim: dict[str, Any], said: str
) -> None:
    pinned = {"name": "data-b", "phase": "Bound", "volume": "pv-b", "pinned_nodes": ["bumble"]}
    claims = [pinned, {"volume": None, "phase": "Bound", **claim}]
    live = {
        "ready_endpoints": 3,
        "endpoint_nodes": ["bumble", "honey", "sting"],
        "claims": [c["name"] for c in claims],
        "unknown_claims": unknown_claims(claims),
        "data_only_on": [],  # the one known claim is on bumble alone, the other unknown
        "restart_shares_volume": [],
        "volume_nodes": ["bumble", "honey"],
    }
    rows = {r.requirement.name: r for r in _posture_rows(POLICY, live)}
    assert rows["ha-data"].status == "unproven" and said in rows["ha-data"].detail
    assert rows["ha-volume-nodes"].status == "unproven" and said in rows["ha-volume-nodes"].detail


def test_no_flywheel_variable_leaks_into_these_tests() -> None:
    assert not [k for k in os.environ if k.startswith("FLYWHEEL_")]
