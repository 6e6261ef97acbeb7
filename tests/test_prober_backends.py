"""The survival prober against a real SeaweedFS behind a two-backend, round-robin proxy
whose other backend answers NoSuchKey: what a Service in front of several gateways
does when one of them is wrong about the state."""

from __future__ import annotations

import time

from netfaults import missing_key_server, round_robin_proxy

from harness.controls.prober import Prober, summarize
from harness.lab.seaweed import SeaweedS3
from probes.s3client import load_authority


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
