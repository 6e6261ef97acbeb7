"""The survival prober against a real SeaweedFS behind a two-backend, round-robin proxy
whose other backend answers NoSuchKey: what a Service in front of several gateways
does when one of them is wrong about the state."""

from __future__ import annotations

import threading
import time

import pytest

from flywheel_chaos.s3.authority import load_authority
from harness.controls.prober import Prober, Sample, summarize
from harness.lab.seaweed import SeaweedS3
from harness.record.verdict import decide, fault_effect
from tests.support.netfaults import Switch, missing_key_server, round_robin_proxy, switchable_proxy


def _sample_for(prober: Prober, seconds: float) -> dict[str, int]:
    prober.start()
    time.sleep(seconds)
    prober.stop()
    heads = [s for s in prober.snapshot() if s.kind == "head"]
    return {
        "heads": len(heads),
        "ok": sum(s.ok for s in heads),
        "missing": sum(s.error == "no-such-key" for s in heads),
        "state_key_missing": summarize(
            prober.snapshot(), prober.started_at, prober.started_at, budget_ms=60_000
        )["state_key_missing"],
    }


def test_each_head_on_a_new_connection_reaches_every_backend_and_sees_the_missing_key(
    seaweed: SeaweedS3, authority_env: dict[str, str]
) -> None:
    with missing_key_server() as wrong, round_robin_proxy([seaweed.endpoint, wrong]) as proxy:
        prober = Prober(load_authority(endpoint=proxy), head_interval_s=0.05, canary_interval_s=30)
        seen = _sample_for(prober, 1.5)
    assert seen["heads"] >= 10
    assert seen["ok"] >= 3 and seen["missing"] >= 3
    assert seen["state_key_missing"] == seen["missing"]


def test_a_kept_alive_head_connection_keeps_asking_the_backend_it_landed_on(
    seaweed: SeaweedS3, authority_env: dict[str, str]
) -> None:
    with missing_key_server() as wrong, round_robin_proxy([seaweed.endpoint, wrong]) as proxy:
        prober = Prober(
            load_authority(endpoint=proxy),
            head_interval_s=0.05,
            canary_interval_s=30,
            head_new_connection=False,
        )
        seen = _sample_for(prober, 1.5)
    assert seen["heads"] >= 10
    # the blind spot the default avoids: the answers come from the one backend the
    # connection landed on (it moves only when a connection is dropped, e.g. after
    # an error answer), never from both in turn as with a new connection per HEAD
    assert min(seen["ok"], seen["missing"]) <= 2


def test_a_prober_thread_that_stalls_two_seconds_makes_the_verdict_an_error_naming_the_gap(
    seaweed: SeaweedS3, authority_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prober = Prober(load_authority(), head_interval_s=0.05, canary_interval_s=30)
    record = prober._record
    stalled: list[bool] = []

    def stall_once(sample: Sample) -> None:
        record(sample)
        if sample.kind == "head" and not stalled:
            stalled.append(True)
            time.sleep(2.0)  # the sampler itself stops: no request in flight

    monkeypatch.setattr(prober, "_record", stall_once)
    prober.start()
    time.sleep(3.0)
    prober.stop()
    summary = summarize(prober.snapshot(), prober.started_at, prober.stopped_at, budget_ms=60_000)
    assert summary["coverage"]["largest_gap_ms"] >= 2000
    action = {
        "name": "delete",
        "status": "succeeded",
        "provider": {"module": "actions.pods", "func": "delete_state_authority_pods"},
        "output": {
            "namespace": "nix-cache",
            "dry_run": False,
            "deleted": [{"name": "p", "owner_uids": ["w"]}],
        },
    }
    verdict, reasons = decide(
        {"status": "completed", "steady_states": {}},
        summary,
        [action],
        None,
        effect=fault_effect([action], {"w"}, "pod-delete"),
    )
    assert verdict == "error"
    assert f"gap of {summary['coverage']['largest_gap_ms']} ms" in reasons[0]


def test_an_error_of_the_prober_s_own_is_a_lost_sample_not_uptime(
    seaweed: SeaweedS3, authority_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prober = Prober(load_authority(), head_interval_s=0.05, canary_interval_s=30)
    original = prober._record
    calls = {"n": 0}

    def broken(sample: Sample) -> None:
        calls["n"] += 1
        if 3 <= calls["n"] <= 30:
            raise RuntimeError("the prober's own bug")
        original(sample)

    monkeypatch.setattr(prober, "_record", broken)
    prober.start()
    time.sleep(2.5)
    prober.stop()
    summary = summarize(
        prober.snapshot(), prober.started_at, prober.stopped_at, prober_errors=prober.errors
    )
    assert summary["coverage"]["prober_errors"] >= 20
    assert summary["coverage"]["largest_gap_ms"] > 1000
    assert summary["head_failures"] == 0  # not an outage of the server either


def test_an_outage_still_open_when_sampling_would_stop_is_measured_to_its_end(
    seaweed: SeaweedS3, authority_env: dict[str, str]
) -> None:
    switch = Switch()
    with switchable_proxy(seaweed.endpoint, switch) as proxy:
        prober = Prober(load_authority(endpoint=proxy), head_interval_s=0.05, canary_interval_s=1)
        prober.start()
        time.sleep(0.5)
        switch.up = False  # the service goes down just before the measurement would end
        time.sleep(0.5)
        down_for = 1.5
        threading.Timer(down_for, lambda: setattr(switch, "up", True)).start()
        came_back = time.time() + down_for
        recovered = prober.finish(time.monotonic() + 10)
    summary = summarize(prober.snapshot(), prober.started_at, prober.stopped_at, budget_ms=5000)
    assert recovered is True and summary["recovered"] is True
    window = summary["outages"][-1]
    assert window["open"] is False
    # it closed when the service came back (the canary sampled as often as HEAD while down),
    # not at the next once-a-second canary
    assert abs(window["end"] - came_back) < 0.5, window


def test_a_hurried_wait_takes_the_owed_heads_at_once_instead_of_at_their_interval(
    seaweed: SeaweedS3, authority_env: dict[str, str]
) -> None:
    # a HEAD every 2 s: two more at their interval would take 2-4 s
    prober = Prober(load_authority(), head_interval_s=2.0, canary_interval_s=30)
    prober.start()
    try:
        assert prober.wait_samples(head=1, canary=0, since=prober.started_at, within_s=5)
        since = time.time()
        assert not prober.wait_samples(head=2, canary=0, since=since, within_s=0.5)
        since = time.time()
        started = time.monotonic()
        assert prober.wait_samples(head=2, canary=0, since=since, within_s=1.5, hurry=True)
        hurried_s = time.monotonic() - started
    finally:
        prober.stop()
    assert hurried_s < 1.0
    heads = [s for s in prober.snapshot() if s.kind == "head" and s.at >= since]
    assert len(heads) >= 2 and all(s.ok for s in heads)
    # stopping wakes a loop in its pause at once too (no 2 s wait for the next interval)
    assert prober.stopped_at - since < 1.5
