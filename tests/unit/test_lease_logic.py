"""When the one-experiment-at-a-time lease counts as held (pure logic)."""

from __future__ import annotations

import datetime as dt

from kubernetes.client import V1LeaseSpec

from flywheel_chaos.kube.safety import lease_expired

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def test_a_lease_renewed_within_its_duration_is_held() -> None:
    spec = V1LeaseSpec(
        holder_identity="vm/1/a",
        lease_duration_seconds=30,
        renew_time=NOW - dt.timedelta(seconds=10),
    )
    assert lease_expired(spec, NOW) is False


def test_a_lease_not_renewed_for_longer_than_its_duration_is_stale() -> None:
    spec = V1LeaseSpec(
        holder_identity="vm/1/a",
        lease_duration_seconds=30,
        renew_time=NOW - dt.timedelta(seconds=31),
    )
    assert lease_expired(spec, NOW) is True


def test_a_lease_without_holder_or_times_is_free() -> None:
    assert (
        lease_expired(
            V1LeaseSpec(holder_identity="", lease_duration_seconds=30, renew_time=NOW), NOW
        )
        is True
    )
    assert (
        lease_expired(V1LeaseSpec(holder_identity="vm/1/a", lease_duration_seconds=30), NOW) is True
    )
