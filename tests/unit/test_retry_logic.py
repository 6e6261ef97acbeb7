"""Pure logic of harness.processes.retry_until: retries are data, each attempt counted."""

from __future__ import annotations

import logging

import pytest

from harness.processes import retry_until


def test_a_step_that_fails_twice_is_retried_until_it_succeeds_and_each_attempt_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    def step() -> str:
        calls.append(len(calls) + 1)
        if len(calls) < 3:
            raise ConnectionError(f"refused #{len(calls)}")
        return "done"

    with caplog.at_level(logging.INFO, logger="flywheel_chaos.processes"):
        assert retry_until(step, 5.0, "writing a canary", interval_s=0.01) == "done"
    assert calls == [1, 2, 3]
    logged = [r.getMessage() for r in caplog.records]
    assert "writing a canary: attempt 1 failed: refused #1" in logged
    assert "writing a canary: attempt 2 failed: refused #2" in logged


def test_a_step_that_never_succeeds_gives_up_at_the_deadline_naming_what_and_the_last_error() -> (
    None
):
    def step() -> None:
        raise TimeoutError("read timeout on PUT")

    with pytest.raises(TimeoutError) as raised:
        retry_until(step, 0.3, "seeding the state key", interval_s=0.05)
    message = str(raised.value)
    assert message.startswith("gave up after 0.3s and ")
    assert "attempts at seeding the state key; last error: read timeout on PUT" in message
