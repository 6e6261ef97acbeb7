"""Outage arithmetic and coverage of the survival prober (pure logic)."""

from __future__ import annotations

import pytest

from harness.controls.prober import Sample, outage_windows, summarize


def _heads(
    pattern: str, start: float = 100.0, step: float = 0.1, latency_ms: float = 5.0
) -> list[Sample]:
    return [
        Sample(
            "head",
            start + i * step,
            ok == "+",
            latency_ms,
            None if ok == "+" else "endpoint-unreachable",
        )
        for i, ok in enumerate(pattern)
    ]


def test_a_run_of_failures_is_one_window_from_first_failure_to_the_next_answer() -> None:
    windows = outage_windows(_heads("+++----++"), end=200.0)
    assert len(windows) == 1
    assert windows[0]["start"] == 100.3
    assert round(windows[0]["end"], 3) == round(100.7 + 0.005, 3)
    assert round(windows[0]["ms"]) == 405
    assert windows[0]["errors"] == {"endpoint-unreachable": 4}


def test_separate_outages_are_separate_windows_and_the_longest_is_reported() -> None:
    summary = summarize(_heads("+--+----+"), 100.0, 101.0, budget_ms=300)
    assert [round(w["ms"]) for w in summary["outages"]] == [205, 405]
    assert round(summary["longest_outage_ms"]) == 405
    assert summary["within_budget"] is False


def test_an_outage_still_open_at_the_end_is_flagged_and_not_recovered() -> None:
    summary = summarize(
        _heads("++---"), 100.0, 100.9, fault_started_at=100.1, fault_ended_at=100.15
    )
    assert summary["outages"][-1]["open"] is True
    assert summary["recovered"] is False
    assert summary["recovery_after_fault_ms"] is None


def test_recovery_is_measured_from_the_end_of_the_fault_action() -> None:
    summary = summarize(
        _heads("++----+++"), 100.0, 101.0, fault_started_at=100.15, fault_ended_at=100.25
    )
    assert round(summary["recovery_after_fault_ms"]) == round((100.6 + 0.005 - 100.25) * 1000)


def test_a_hung_request_answered_after_a_freeze_ends_the_window_when_it_is_answered() -> None:
    samples = [
        Sample("head", 100.0, True, 5),
        Sample("head", 100.1, False, 1000, "timeout"),
        Sample("head", 101.1, True, 1900),
    ]
    (window,) = outage_windows(samples, end=110)
    assert round(window["ms"]) == 2900


def test_a_failed_canary_keeps_the_outage_open_while_heads_already_answer() -> None:
    samples = [
        *_heads("+--+++++"),
        Sample("canary", 100.05, True, 20),
        Sample("canary", 100.25, False, 20, "InternalError"),
        Sample("canary", 100.65, True, 20),
    ]
    (window,) = outage_windows(samples, end=110)
    assert window["start"] == 100.1
    assert round(window["end"], 3) == 100.67
    assert window["signals"] == ["head", "canary"]
    assert window["errors"] == {"endpoint-unreachable": 2, "InternalError": 1}
    assert window["first_seen_s"] == {"endpoint-unreachable": 0.0, "InternalError": 0.15}


def test_a_canary_failure_alone_is_an_outage() -> None:
    samples = [
        *_heads("++++++"),
        Sample("canary", 100.05, False, 30, "InternalError"),
        Sample("canary", 100.45, True, 30),
    ]
    summary = summarize(samples, 100.0, 101.0, budget_ms=100)
    assert [w["signals"] for w in summary["outages"]] == [["canary"]]
    assert round(summary["longest_outage_ms"]) == round((100.48 - 100.05) * 1000)
    assert summary["within_budget"] is False


def test_a_sampler_that_stalled_two_seconds_shows_the_gap_in_its_coverage() -> None:
    samples = [*_heads("+++++"), *_heads("+++", start=102.5)]
    cover = summarize(samples, 100.0, 103.0)["coverage"]
    assert cover["largest_gap_ms"] == round((102.5 - (100.4 + 0.005)) * 1000, 1)
    assert cover["prober_errors"] == 0


def test_a_request_hung_through_a_freeze_is_watching_not_a_gap() -> None:
    samples = [
        *_heads("++"),
        Sample("head", 100.2, False, 3000.0, "timeout"),
        *_heads("++", start=103.25),
    ]
    assert summarize(samples, 100.0, 103.45)["coverage"]["largest_gap_ms"] < 100


def test_the_time_after_the_last_sample_is_unwatched_too() -> None:
    samples = [*_heads("+++")]
    # the sampler stalled after its third HEAD and the measurement ended 118 s later
    assert summarize(samples, 100.0, 218.3)["coverage"]["largest_gap_ms"] > 118_000


def test_a_head_that_hangs_45_s_and_then_answers_is_an_outage_from_its_start() -> None:
    samples = [*_heads("++"), Sample("head", 100.2, True, 45_000.0), *_heads("++", start=145.25)]
    summary = summarize(samples, 100.0, 145.45)
    assert summary["longest_outage_ms"] == pytest.approx(45_000.0, abs=1)
    assert summary["outages"][0]["errors"] == {"slow": 1}
