"""The bake-off's ranking and numbers (pure logic over synthetic records)."""

from __future__ import annotations

from typing import Any

from harness.bakeoff.plan import GATE_FAULTS, parse_candidates, parse_faults
from harness.bakeoff.scorecard import _phantoms, _required, fault_stats, rank_key, wilson_upper


def _records(
    n: int, outage_s: float, phantom_plans: int = 0, verdict: str = "survived"
) -> list[dict[str, Any]]:
    return [
        {
            "verdict": verdict,
            "prober": {"longest_outage_ms": outage_s * 1000, "head_failures": 1, "head_samples": 100,
                       "state_key_missing": 0, "recovery_after_fault_ms": 500.0},
            "tofu": {"no_op": 10, "failed": 0, "phantom": phantom_plans if i == 0 else 0},
        }
        for i in range(n)
    ]  # fmt: skip


def _candidate(name: str, outage_s: float, phantom_plans: int = 0) -> dict[str, Any]:
    faults = {
        f: fault_stats(_records(5, outage_s, phantom_plans if f == "pod-delete" else 0))
        for f in GATE_FAULTS
    }
    candidate: dict[str, Any] = {"candidate": name, "faults": faults}
    candidate["required"] = _required(candidate)
    candidate["phantoms"] = _phantoms(candidate)
    return candidate


def test_one_phantom_plan_ranks_a_candidate_below_a_slower_one_without() -> None:
    fast_but_phantom = _candidate("fast", outage_s=0.1, phantom_plans=1)
    slow_and_clean = _candidate("slow", outage_s=9.0)
    ranked = sorted([fast_but_phantom, slow_and_clean], key=rank_key)
    assert [c["candidate"] for c in ranked] == ["slow", "fast"]
    assert fast_but_phantom["phantoms"] == ["pod-delete: 1 phantom tofu plan(s)"]


def test_among_clean_candidates_faults_passed_then_the_bound_then_the_p95_decide() -> None:
    quick = _candidate("quick", outage_s=0.5)
    steady = _candidate("steady", outage_s=2.0)
    shaky = _candidate("shaky", outage_s=0.1)
    shaky["faults"]["node-drain"] = fault_stats(_records(5, 0.1, verdict="not-survived"))
    shaky["required"] = _required(shaky)
    ranked = [c["candidate"] for c in sorted([steady, shaky, quick], key=rank_key)]
    assert ranked == ["quick", "steady", "shaky"]
    assert quick["required"]["faults_passed"] == 3 and shaky["required"]["faults_passed"] == 2


def test_fault_numbers_are_the_records_own() -> None:
    stats = fault_stats(_records(4, 2.0) + _records(1, 40.0, verdict="not-survived"))
    assert (stats["runs"], stats["survived"]) == (5, 4)
    assert stats["outage_s"]["p50"] == 2.0 and stats["outage_s"]["max"] == 40.0
    assert stats["head_failures"] == 5 and stats["tofu_plans"]["no-op"] == 50
    assert stats["wilson95"][1] == round(wilson_upper(4, 5) or 0, 3)


def test_candidates_and_faults_are_checked_before_anything_runs() -> None:
    import pytest

    from harness.errors import ConfigError

    assert [c.name for c in parse_candidates(["ha-rustfs:hung-peer"])] == ["ha-rustfs:hung-peer"]
    with pytest.raises(ConfigError, match="has no variant 'nope'"):
        parse_candidates(["ha-rustfs:nope"])
    with pytest.raises(ConfigError, match="unknown fault"):
        parse_faults(["node-melt"])
    assert parse_candidates(["staging/tofu-state/rustfs"])[0].in_lab is False
