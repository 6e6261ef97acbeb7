"""When the one-experiment-at-a-time lease counts as held: judged by when this host saw it
change, never by the holder's clock (pure logic; the lease objects are given as data)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta

from flywheel_chaos.kube.safety import LeaseObservations

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def _lease(version: str, renewed: dt.datetime, holder: str = "vm/1/a") -> V1Lease:
    return V1Lease(
        metadata=V1ObjectMeta(name="flywheel-chaos-experiment", namespace="kube-system",
                              resource_version=version),
        spec=V1LeaseSpec(holder_identity=holder, lease_duration_seconds=30, renew_time=renewed),
    )  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_live_lease_from_a_host_whose_clock_is_31_s_behind_ours_is_not_taken(
    tmp_path: Path,
) -> None:
    clock = Clock()
    seen = LeaseObservations(tmp_path / "seen.json", clock)
    # the holder renews every 10 s; its renewTime reads 31 s old on our clock every time
    for version in range(1, 7):
        lease = _lease(str(version), NOW - dt.timedelta(seconds=31))
        assert seen.expired(lease) is False
        clock.now += 10


def test_a_lease_unchanged_here_for_longer_than_its_duration_is_expired(tmp_path: Path) -> None:
    clock = Clock()
    seen = LeaseObservations(tmp_path / "seen.json", clock)
    lease = _lease("7", NOW)  # a renewTime from our "now": the clock is not what decides
    assert seen.expired(lease) is False
    clock.now += 29
    assert seen.expired(lease) is False
    clock.now += 2
    assert seen.expired(lease) is True


def test_another_process_on_this_host_continues_the_observation(tmp_path: Path) -> None:
    clock = Clock()
    LeaseObservations(tmp_path / "seen.json", clock).expired(_lease("9", NOW))
    clock.now += 31
    assert LeaseObservations(tmp_path / "seen.json", clock).expired(_lease("9", NOW)) is True
    assert LeaseObservations(tmp_path / "seen.json", clock).expired(_lease("10", NOW)) is False


def test_a_lease_without_holder_is_free(tmp_path: Path) -> None:
    seen = LeaseObservations(tmp_path / "seen.json", Clock())
    assert seen.expired(_lease("1", NOW, holder="")) is True


def test_an_unreadable_intent_annotation_refuses_naming_it_instead_of_reading_none() -> None:
    import pytest
    from kubernetes.client import V1Node

    from flywheel_chaos.kube.intents import INTENT_ANNOTATION, annotation_intents
    from flywheel_chaos.kube.safety import SafetyRefusal

    node = V1Node(
        metadata=V1ObjectMeta(name="bumble", annotations={INTENT_ANNOTATION: "{not json"})
    )
    with pytest.raises(
        SafetyRefusal, match=r"bumble's annotation flywheel-chaos.io/rollback-intent"
    ):
        annotation_intents(node)
    fine = V1Node(metadata=V1ObjectMeta(name="bumble", annotations={INTENT_ANNOTATION: "[]"}))
    assert annotation_intents(fine) == []
