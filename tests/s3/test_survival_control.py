"""The survival control's hooks against a real S3 server: when the prober starts and stops."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from flywheel_chaos import settings
from harness.controls import current_run, survival


@pytest.fixture
def fresh_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(settings.FLYWHEEL_TOFU_PLAN_STACK.name, raising=False)
    monkeypatch.delenv(settings.FLYWHEEL_RUN_ID.name, raising=False)
    current_run(reset=True)
    yield
    prober = current_run().prober
    if prober is not None:
        prober.stop()
    current_run(reset=True)


def test_with_the_lease_taken_the_prober_starts_with_the_experiment_and_the_baseline_is_in_by_the_method(
    authority_env: dict[str, str], fresh_run: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = current_run()
    monkeypatch.setenv(settings.FLYWHEEL_RUN_ID.name, run.run_id)  # as the safety control does
    survival.before_experiment_control({}, outage_budget_s=10)
    assert run.prober is not None
    time.sleep(0.4)  # the steady-state hypothesis would run here
    waited = time.monotonic()
    survival.before_method_control({}, outage_budget_s=10)
    waited = time.monotonic() - waited
    assert waited < 0.1  # three HEADs and a canary were already in
    survival.after_experiment_control({}, {}, outage_budget_s=10)
    summary = run.prober_summary
    assert summary is not None and summary["recovered"] is True
    assert summary["head_samples"] >= 5 and summary["canary_samples"] >= 1
    assert summary["coverage"]["largest_gap_ms"] < 1000
    assert run.prober.stopped_at > 0


def test_without_the_lease_taken_for_this_run_the_prober_starts_only_at_the_method(
    authority_env: dict[str, str], fresh_run: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = current_run()
    monkeypatch.setenv(settings.FLYWHEEL_RUN_ID.name, "another-run")
    survival.before_experiment_control({}, outage_budget_s=10)
    assert run.prober is None
    survival.before_method_control({}, outage_budget_s=10)
    assert run.prober is not None
    heads = [s for s in run.prober.snapshot() if s.kind == "head"]
    assert len(heads) >= 3  # the baseline, taken before the method went on
    survival.after_experiment_control({}, {}, outage_budget_s=10)
    assert run.prober_summary is not None and run.prober_summary["recovered"] is True
