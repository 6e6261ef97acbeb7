"""Backup, restore, retention and versioning probes against the real SeaweedFS."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from probes import backup
from tests.support.s3kit import STATE_KEY, empty_and_delete_bucket

pytestmark = pytest.mark.s3


@pytest.fixture
def backup_bucket(
    s3_admin: Any, state_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    name = f"{state_bucket}-backup"
    s3_admin.create_bucket(Bucket=name)
    yield name
    empty_and_delete_bucket(s3_admin, name)


def _all_keys(client: Any, bucket: str) -> list[str]:
    listing = client.list_object_versions(Bucket=bucket)
    return [v["Key"] for v in listing.get("Versions", []) + listing.get("DeleteMarkers", [])]


def test_an_older_state_version_is_restored_byte_identical_and_nothing_is_left(
    authority_env: dict[str, str], s3_admin: Any, state_bucket: str
) -> None:
    result = backup.versioned_restore_ok()
    assert result["restored_version"] != result["replaced_version"]
    assert len(result["sha256"]) == 64
    assert _all_keys(s3_admin, state_bucket) == [STATE_KEY]


def test_restore_of_versions_needs_versioning(
    authority_env: dict[str, str], unversioned_bucket: str
) -> None:
    with pytest.raises(ActivityFailed, match=r"^versioning-disabled: "):
        backup.versioned_restore_ok(bucket=unversioned_bucket)


def test_a_backup_copy_restores_after_the_original_is_lost(
    authority_env: dict[str, str], s3_admin: Any, state_bucket: str, backup_bucket: str
) -> None:
    result = backup.backup_copy_restore_ok()
    assert result["backup_bucket"] == backup_bucket
    assert _all_keys(s3_admin, state_bucket) == [STATE_KEY]
    assert _all_keys(s3_admin, backup_bucket) == []


def test_a_missing_backup_bucket_is_classed_no_such_bucket(authority_env: dict[str, str]) -> None:
    with pytest.raises(ActivityFailed, match=r"^no-such-bucket: "):
        backup.backup_copy_restore_ok(backup_bucket="no-backup-bucket-here")


def test_no_lifecycle_rule_is_a_finding_not_a_failure(authority_env: dict[str, str]) -> None:
    result = backup.retention_rules_reported()
    assert result["rules"] == []
    assert "kept forever" in result["findings"][0]


def test_a_noncurrent_version_rule_is_reported(
    authority_env: dict[str, str], s3_admin: Any, state_bucket: str
) -> None:
    # SeaweedFS 4.48 stores and returns lifecycle rules: a server that did not would make the
    # probe report no rule, and this test fail (it used to skip itself then)
    s3_admin.put_bucket_lifecycle_configuration(
        Bucket=state_bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "old-state",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 90},
                }
            ]
        },
    )
    result = backup.retention_rules_reported()
    assert [r["ID"] for r in result["rules"]] == ["old-state"]
    assert result["noncurrent_version_days"] == [90]
    assert result["findings"] == []


def _state_facts(client: Any, bucket: str) -> tuple[str, list[str]]:
    etag = client.head_object(Bucket=bucket, Key=STATE_KEY)["ETag"]
    listing = client.list_object_versions(Bucket=bucket, Prefix=STATE_KEY)
    return etag, sorted(v["VersionId"] for v in listing.get("Versions", []))


def test_without_a_backup_copy_of_the_state_key_the_proof_fails(
    authority_env: dict[str, str], backup_bucket: str
) -> None:
    with pytest.raises(ActivityFailed, match=r"^no-such-key: .*no backup copy of the state key"):
        backup.state_key_backup_ok()


def test_a_backup_copy_older_than_the_bound_fails_with_its_age(
    authority_env: dict[str, str], s3_admin: Any, state_bucket: str, backup_bucket: str
) -> None:
    s3_admin.copy_object(
        Bucket=backup_bucket, Key=STATE_KEY, CopySource={"Bucket": state_bucket, "Key": STATE_KEY}
    )
    time.sleep(2.1)
    with pytest.raises(ActivityFailed, match=r"^other: BackupStale: .* is \d+ s old"):
        backup.state_key_backup_ok(max_backup_age_s=1.0)


def test_a_backup_matching_a_version_passes_and_the_state_key_is_untouched(
    authority_env: dict[str, str], s3_admin: Any, state_bucket: str, backup_bucket: str
) -> None:
    s3_admin.copy_object(
        Bucket=backup_bucket, Key=STATE_KEY, CopySource={"Bucket": state_bucket, "Key": STATE_KEY}
    )
    # a newer state version: the backup now matches the previous one
    s3_admin.put_object(Bucket=state_bucket, Key=STATE_KEY, Body=b'{"version": 4, "serial": 8}\n')
    before = _state_facts(s3_admin, state_bucket)
    result = backup.state_key_backup_ok()
    assert result["versions"] == 2 and result["noncurrent_versions"] == 1
    assert result["backup_matches_version"] == result["restored_version"]
    assert result["restored_is_current"] is False
    assert _state_facts(s3_admin, state_bucket) == before
    assert _all_keys(s3_admin, state_bucket) == [STATE_KEY, STATE_KEY]  # no scratch left


def test_a_backup_that_matches_no_version_is_an_integrity_mismatch(
    authority_env: dict[str, str], s3_admin: Any, backup_bucket: str
) -> None:
    s3_admin.put_object(Bucket=backup_bucket, Key=STATE_KEY, Body=b"{}\n")
    with pytest.raises(ActivityFailed, match=r"^integrity-mismatch: SHA256: .*matches none"):
        backup.state_key_backup_ok()
