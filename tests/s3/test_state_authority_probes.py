"""The S3 probes against real S3 servers (SeaweedFS and RustFS): success paths and each failure class.

Every test here runs against both servers: the S3 folder's ``server`` fixture is
parametrised (``SERVERS``), and every fixture on top of it (``s3_admin``, ``state_bucket``,
``authority_env``) follows.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from flywheel_chaos.s3.authority import CANARY_PREFIX
from harness.lab.rustfs import RustFSServer
from harness.lab.seaweed import SeaweedS3
from probes import state_authority as sa
from tests.support.netfaults import closed_port_endpoint, header_stripping_proxy, silent_listener
from tests.support.s3kit import GUARD_CHECK_NAMES, STATE_KEY

pytestmark = pytest.mark.s3
SERVERS = ["seaweedfs", "rustfs"]


def _keys(client: Any, bucket: str) -> list[str]:
    listing = client.list_object_versions(Bucket=bucket)
    return [v["Key"] for v in listing.get("Versions", []) + listing.get("DeleteMarkers", [])]


def test_list_buckets_lists_the_state_bucket(authority_env: dict[str, str]) -> None:
    result = sa.state_bucket_listed()
    assert result["bucket"] == authority_env["TOFU_STATE_BUCKET"]
    assert result["buckets_listed"] >= 1


def test_head_bucket_succeeds_on_the_state_bucket(authority_env: dict[str, str]) -> None:
    assert sa.state_bucket_reachable()["bucket"] == authority_env["TOFU_STATE_BUCKET"]


def test_state_key_head_returns_size_etag_and_version(
    authority_env: dict[str, str], s3_admin: Any
) -> None:
    result = sa.state_key_readable()
    head = s3_admin.head_object(Bucket=authority_env["TOFU_STATE_BUCKET"], Key=STATE_KEY)
    assert result["size"] == head["ContentLength"]
    assert result["etag"] == head["ETag"].strip('"')
    assert result["version_id"] == head["VersionId"]
    assert result["last_modified"]


def test_canary_round_trip_leaves_nothing_behind(
    authority_env: dict[str, str], s3_admin: Any
) -> None:
    result = sa.canary_round_trip_ok(size_bytes=64 * 1024)
    assert result["key"].startswith(CANARY_PREFIX)
    assert result["size"] == 65536
    assert _keys(s3_admin, authority_env["TOFU_STATE_BUCKET"]) == [STATE_KEY]


def test_canary_size_above_64_kib_is_refused(authority_env: dict[str, str]) -> None:
    with pytest.raises(ActivityFailed, match=r"^other: configuration: canary size 65537"):
        sa.canary_round_trip_ok(size_bytes=65537)


def test_versioning_enabled_passes_on_a_versioned_bucket(authority_env: dict[str, str]) -> None:
    assert sa.versioning_enabled()["status"] == "Enabled"


def test_lock_exclusive_sees_412_and_one_race_winner(
    authority_env: dict[str, str], s3_admin: Any
) -> None:
    result = sa.lock_exclusive()
    assert result["first_put"] == 200
    assert result["second_put"] == 412
    assert result["race_winners"] == 1
    assert _keys(s3_admin, authority_env["TOFU_STATE_BUCKET"]) == [STATE_KEY]


def test_combined_probe_reports_every_check(authority_env: dict[str, str]) -> None:
    result = sa.state_authority_healthy()
    assert result["ok"] is True
    assert [c["name"] for c in result["checks"]] == GUARD_CHECK_NAMES


def test_a_wrong_bucket_is_classed_no_such_bucket(authority_env: dict[str, str]) -> None:
    with pytest.raises(ActivityFailed, match=r"^no-such-bucket: 404: HeadBucket failed"):
        sa.state_bucket_reachable(bucket="no-such-bucket-here")
    with pytest.raises(ActivityFailed, match=r"^no-such-bucket: NotListed: "):
        sa.state_bucket_listed(bucket="no-such-bucket-here")


def test_state_key_in_a_missing_bucket_is_classed_no_such_bucket(
    authority_env: dict[str, str],
) -> None:
    with pytest.raises(ActivityFailed, match=r"^no-such-bucket: "):
        sa.state_key_readable(bucket="no-such-bucket-here")


def test_a_missing_state_key_is_classed_no_such_key(authority_env: dict[str, str]) -> None:
    with pytest.raises(ActivityFailed, match=r"^no-such-key: 404: .*hint: check TOFU_STATE_KEY"):
        sa.state_key_readable(key="env/missing/terraform.tfstate")


def test_wrong_credentials_are_classed_access_denied(
    authority_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "definitely-wrong")
    with pytest.raises(ActivityFailed, match=r"^access-denied: SignatureDoesNotMatch: "):
        sa.state_bucket_listed()
    # credentials given as Chaos Toolkit secrets are used too
    with pytest.raises(ActivityFailed, match=r"^access-denied: 403: HeadObject failed"):
        sa.state_key_readable(
            secrets={"aws_access_key_id": "AKNOBODY", "aws_secret_access_key": "x"}
        )


def test_a_closed_port_fails_unreachable_in_under_two_seconds(
    authority_env: dict[str, str],
) -> None:
    started = time.monotonic()
    with pytest.raises(ActivityFailed, match=r"^endpoint-unreachable: EndpointConnectionError"):
        sa.state_key_readable(endpoint=closed_port_endpoint())
    assert time.monotonic() - started < 2.0


def test_a_silent_listener_fails_with_timeout_within_the_deadline(
    authority_env: dict[str, str],
) -> None:
    with silent_listener() as endpoint:
        started = time.monotonic()
        with pytest.raises(ActivityFailed, match=r"^timeout: ReadTimeoutError"):
            sa.state_key_readable(endpoint=endpoint, timeout_s=1.5)
        elapsed = time.monotonic() - started
    assert 0.5 < elapsed < 1.5 + 0.3


def test_the_combined_probe_against_a_silent_listener_stays_within_one_deadline(
    authority_env: dict[str, str],
) -> None:
    with silent_listener() as endpoint:
        started = time.monotonic()
        with pytest.raises(ActivityFailed, match=r"^timeout: "):
            sa.state_authority_healthy(endpoint=endpoint, timeout_s=1.0)
        assert time.monotonic() - started < 1.0 + 0.3


def test_an_unversioned_bucket_is_classed_versioning_disabled(
    authority_env: dict[str, str], unversioned_bucket: str
) -> None:
    with pytest.raises(ActivityFailed, match=r"^versioning-disabled: NeverEnabled: "):
        sa.versioning_enabled(bucket=unversioned_bucket)


def test_an_endpoint_ignoring_if_none_match_fails_lock_exclusivity(
    authority_env: dict[str, str], server: SeaweedS3 | RustFSServer, s3_admin: Any
) -> None:
    with header_stripping_proxy(server.endpoint, server.access_key, server.secret_key) as proxy:
        # the proxy itself is a faithful S3 endpoint for everything else
        assert sa.canary_round_trip_ok(endpoint=proxy)["size"] == 1024
        with pytest.raises(
            ActivityFailed, match=r"^lock-not-exclusive: 200: a second If-None-Match"
        ):
            sa.lock_exclusive(endpoint=proxy)
    assert _keys(s3_admin, authority_env["TOFU_STATE_BUCKET"]) == [STATE_KEY]


def test_serving_again_needs_a_stable_run_not_one_lucky_success(
    authority_env: dict[str, str], server: SeaweedS3 | RustFSServer
) -> None:
    # half of all canary keys cannot be deleted: each attempt passes or fails by its key
    def routed_to_a_member_that_left(path: str) -> bool:
        return hashlib.sha256(path.encode()).digest()[0] % 2 == 0

    with (
        header_stripping_proxy(
            server.endpoint,
            server.access_key,
            server.secret_key,
            strip="X-Nothing",
            fail_delete=routed_to_a_member_that_left,
        ) as proxy,
        pytest.raises(ActivityFailed, match=r"^not-stable: InternalError: served for less"),
    ):
        sa.state_authority_serving_within(within_s=4, interval_s=0.05, stable_s=2, endpoint=proxy)


def test_serving_again_returns_once_every_check_passed_for_the_stable_time(
    authority_env: dict[str, str],
) -> None:
    started = time.monotonic()
    result = sa.state_authority_serving_within(within_s=20, interval_s=0.1, stable_s=3)
    assert result["failures"] == 0 and result["attempts"] >= 3
    # "seconds" is when serving began (the first check passed), not the end of the stable time
    assert result["seconds"] < 2.5
    assert 3 <= time.monotonic() - started < 20


def test_no_endpoint_is_a_configuration_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(ActivityFailed, match=r"^other: configuration: no S3 endpoint configured"):
        sa.state_bucket_listed()


def test_the_state_key_is_never_under_the_canary_prefix(authority_env: dict[str, str]) -> None:
    with pytest.raises(ActivityFailed, match="under the harness's canary prefix"):
        sa.state_key_readable(key=CANARY_PREFIX + "x")


def test_a_503_answered_to_one_racer_is_retried_within_the_race_and_one_wins(
    server: SeaweedS3 | RustFSServer, authority_env: dict[str, str]
) -> None:
    answered: list[str] = []

    def once(path: str) -> bool:  # the first conditional PUT of the race meets a 503
        if path.endswith("-race.tflock") and not answered:
            answered.append(path)
            return True
        return False

    with header_stripping_proxy(
        server.endpoint, server.access_key, server.secret_key, strip="", fail_put=once
    ) as proxy:
        result = sa.lock_exclusive(endpoint=proxy)
    assert answered, "the proxy never answered 503"
    assert result["race_winners"] == 1 and result["race_retries"] >= 1
    assert result["race_refusals"] == [412]
