"""Verdict rules (pure logic): survived needs proof the fault happened and a prober that watched."""

from __future__ import annotations

from typing import Any

from harness.controls.prober import Sample, summarize
from harness.record.verdict import decide, fault_effect

NS = "nix-cache"
WORKLOADS = {"deployment-uid"}
DRAIN_OUTPUT = {
    "node": "bumble",
    "dry_run": False,
    "pods": [
        {
            "pod": "nix-cache/attic-rustfs-openebs-x",
            "evicted_at": "2026-11-28T00:00:00+00:00",
            "owner_uids": ["rs-uid", "deployment-uid"],
        }
    ],
}
DRAIN = {"type": "python", "module": "actions.nodes", "func": "drain_node"}


def _journal(
    status: str = "completed", deviated: bool = False, before: bool = True, after: bool = True
) -> dict[str, Any]:
    return {
        "status": status,
        "deviated": deviated,
        "steady_states": {
            "before": {"steady_state_met": before},
            "after": {"steady_state_met": after},
        },
    }


def _summary(**changes: Any) -> dict[str, Any]:
    heads = [Sample("head", 100.0 + i * 0.1, True, 5.0) for i in range(10)]
    return {**summarize(heads, 100.0, 101.0, budget_ms=5000.0), **changes}


def _drain(
    output: dict[str, Any] | None = None, status: str = "succeeded", provider: Any = DRAIN
) -> list[dict[str, Any]]:
    return [
        {"name": "drain", "status": status, "provider": provider, "output": output or DRAIN_OUTPUT}
    ]


def _decide(
    actions: list[dict[str, Any]] | None = None,
    summary: dict[str, Any] | None = None,
    journal: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[str, list[str]]:
    actions = _drain() if actions is None else actions
    return decide(
        journal or _journal(),
        _summary() if summary is None else summary,
        actions,
        kwargs.pop("refused", None),
        effect=fault_effect(actions, WORKLOADS, kwargs.pop("fault", "node-drain")),
        **kwargs,
    )


def test_a_run_that_evicted_the_authority_within_budget_survived() -> None:
    verdict, reasons = _decide()
    assert verdict == "survived"
    assert "nix-cache/attic-rustfs-openebs-x evicted" in reasons[0]


def test_outages_steady_states_and_failures_keep_their_verdicts() -> None:
    assert (
        _decide(summary=_summary(within_budget=False, longest_outage_ms=9000.0))[0]
        == "not-survived"
    )
    assert _decide(journal=_journal(deviated=True, after=False))[0] == "not-survived"
    assert _decide(journal=_journal(before=False))[0] == "error"
    assert _decide(actions=_drain(status="failed"))[0] == "error"
    assert _decide(journal=_journal(status="interrupted"))[0] == "aborted"
    assert _decide(refused="another experiment holds the lease")[0] == "aborted"


def test_no_fault_action_is_never_survived() -> None:
    verdict, reasons = _decide(actions=[])
    assert verdict == "aborted"
    assert reasons[0].startswith("fault did not take effect: the fault's own action")


def test_a_dry_run_fault_is_never_survived() -> None:
    verdict, reasons = _decide(actions=_drain({**DRAIN_OUTPUT, "dry_run": True}))
    assert verdict == "aborted"
    assert reasons == ["fault did not take effect: a fault action ran as a dry run"]


def test_a_drain_of_a_node_without_the_authority_is_never_survived() -> None:
    other = {
        "node": "sting",
        "dry_run": False,
        "pods": [{"pod": "default/web-1", "evicted_at": "x", "owner_uids": ["web-uid"]}],
    }
    verdict, reasons = _decide(actions=_drain(other))
    assert verdict == "aborted"
    assert reasons[0].startswith("fault did not take effect: no pod of the state authority")


def test_an_action_that_is_not_the_faults_own_proves_nothing() -> None:
    impostor = {"type": "python", "module": "json", "func": "loads"}
    confirmed = {"confirmed": True, "confirmation": "trust me", "dry_run": False}
    verdict, reasons = _decide(
        actions=_drain(confirmed, provider=impostor), fault="node-unavailable"
    )
    assert verdict == "aborted" and "own action" in reasons[0]


def test_a_confirmed_node_fault_counts_as_taking_effect() -> None:
    output = {
        "node": "bumble",
        "dry_run": False,
        "confirmed": True,
        "confirmation": "bumble NotReady after 11.2 s",
        "displaced_pods": [{"pod": "nix-cache/a", "owner_uids": ["deployment-uid"]}],
    }
    unavailable = {"type": "python", "module": "actions.nodes", "func": "make_node_unavailable"}
    actions = _drain(output, provider=unavailable)
    assert _decide(actions=actions, fault="node-unavailable")[0] == "survived"
    # the same fault on a node that ran no pod of the authority proves nothing
    elsewhere = {**output, "displaced_pods": [{"pod": "default/web", "owner_uids": ["web"]}]}
    actions = _drain(elsewhere, provider=unavailable)
    assert _decide(actions=actions, fault="node-unavailable")[0] == "aborted"


def test_a_prober_gap_over_one_second_is_an_error_naming_the_gap() -> None:
    heads = [Sample("head", 100.0 + i * 0.1, True, 5.0) for i in range(5)]
    heads += [Sample("head", 102.5 + i * 0.1, True, 5.0) for i in range(5)]
    summary = summarize(heads, 100.0, 103.0, budget_ms=5000.0)
    verdict, reasons = _decide(summary=summary)
    assert verdict == "error"
    assert "gap of 2095.0 ms" in reasons[0]


def test_a_lost_lease_aborts_the_run() -> None:
    verdict, reasons = _decide(lease_lost="lease lost: the lease is now held by thief")
    assert (verdict, reasons) == ("aborted", ["lease lost: the lease is now held by thief"])


def test_a_state_key_reported_missing_even_briefly_is_not_survived() -> None:
    heads = [
        Sample("head", 100.0 + i * 0.1, i != 2, 5.0, None if i != 2 else "no-such-key")
        for i in range(10)
    ]
    summary = summarize(heads, 100.0, 101.0, budget_ms=30000)
    assert summary["within_budget"] is True and summary["state_key_missing"] == 1
    verdict, reasons = _decide(summary=summary)
    assert verdict == "not-survived"
    assert reasons == [
        "the state key was reported missing 1 time(s) while the fault was live "
        "(NoSuchKey/NoSuchBucket, not unreachable)"
    ]


def test_a_replacement_running_on_the_deleted_pods_volume_makes_the_run_not_survived() -> None:
    overlap = {
        "claim": "attic-rustfs-openebs-data",
        "deleted_pod": "attic-rustfs-openebs-a",
        "replacement_pod": "attic-rustfs-openebs-b",
        "overlap_s": 4.988,
    }
    output = {
        "namespace": NS,
        "dry_run": False,
        "deleted": [{"name": "attic-rustfs-openebs-a", "owner_uids": ["deployment-uid"]}],
    }
    action = {
        "name": "delete-pod",
        "status": "succeeded",
        "provider": {
            "type": "python",
            "module": "actions.pods",
            "func": "delete_state_authority_pods",
        },
        "output": output,
        "volume_overlap": [overlap],
    }
    verdict, reasons = _decide(actions=[action], fault="pod-delete")
    assert verdict == "not-survived"
    assert reasons == [
        "replacement pod attic-rustfs-openebs-b ran on ReadWriteOnce claim "
        "attic-rustfs-openebs-data for 5.0 s while attic-rustfs-openebs-a still held it "
        "(two writers on one volume; use ReadWriteOncePod or a StatefulSet)"
    ]
    assert _decide(actions=[{**action, "volume_overlap": []}], fault="pod-delete")[0] == "survived"


def test_a_server_below_quorum_is_unavailable_not_a_missing_state_key() -> None:
    import botocore.exceptions

    from flywheel_chaos.s3.errors import classify

    below_quorum = botocore.exceptions.ClientError(
        {
            "Error": {
                "Code": "ServiceUnavailable",
                "Message": "Storage resources are insufficient",
            },
            "ResponseMetadata": {"HTTPStatusCode": 503, "HTTPHeaders": {"retry-after": "1"}},
        },
        "HeadObject",
    )
    error = classify(below_quorum)
    assert error.error_class == "unavailable"
    assert "Retry-After: 1" in error.detail
    heads = [
        Sample("head", 100.0 + i * 0.1, i != 2, 5.0, None if i != 2 else "unavailable")
        for i in range(10)
    ]
    assert summarize(heads, 100.0, 101.0)["state_key_missing"] == 0


def test_a_proof_with_rca_after_fails_without_the_live_bundle_or_its_mismatch() -> None:
    from harness.controls.evidence import _proof_verdict

    journal = {**_journal(), "run": [{"activity": {"type": "probe"}, "status": "succeeded"}]}
    assert _proof_verdict(journal, None)[0] == "passed"
    # rca_after names an activity that never ran (a typo, or it was skipped): fail closed
    verdict, reasons = _proof_verdict(journal, None, "lose-bucket-indx", None)
    assert verdict == "failed" and "'lose-bucket-indx'" in reasons[0]
    verdict, reasons = _proof_verdict(
        journal, None, "lose-bucket-index", {"mismatch": False, "why": "not collected: boom"}
    )
    assert verdict == "failed" and "boom" in reasons[0]
    assert _proof_verdict(journal, None, "lose-bucket-index", {"mismatch": True})[0] == "passed"
