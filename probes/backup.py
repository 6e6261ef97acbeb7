"""Chaos Toolkit probes of backup, restore, retention and versioning behaviour.

Every object they write is a scratch state object under ``_flywheel-chaos/``
(in the state bucket and in the backup bucket); the protected state key is
only ever read (:func:`state_key_backup_ok` lists its versions, reads them and
restores one into a scratch key), never written. Scratch objects, all their
versions included, are removed afterwards, also when a check fails.
"""

import contextlib
import time

from chaoslib.types import Configuration, Secrets

from flywheel_chaos import settings
from flywheel_chaos.results import Result
from flywheel_chaos.s3.authority import CANARY_PREFIX
from flywheel_chaos.s3.backup import backup_bucket as backup_bucket_of
from flywheel_chaos.s3.backup import (
    backup_head,
    get_bytes,
    matching_version,
    noncurrent_days,
    noncurrent_rules,
    purge,
    restore_into_scratch,
    scratch_key,
    scratch_state,
    sha256,
    state_key_versions,
)
from flywheel_chaos.s3.client import activity_authority, call_with_retries
from flywheel_chaos.s3.errors import StateAuthorityError

__all__ = [
    "backup_copy_restore_ok",
    "retention_rules_reported",
    "state_key_backup_ok",
    "versioned_restore_ok",
]


def versioned_restore_ok(
    bucket: str = "",
    endpoint: str = "",
    timeout_s: float = 10.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Check that an older version of a state object can be restored byte-identical.

    Writes two versions of a scratch state object, restores the older one by
    copying that version over the key, and compares SHA-256 with what was
    written first. Returns both version ids and the digest. Raises
    ``ActivityFailed`` (``versioning-disabled`` when the server keeps no
    versions, ``integrity-mismatch`` on different bytes, or the failing call's
    class).
    """
    authority = activity_authority(endpoint, bucket, "", timeout_s, configuration, secrets)
    deadline = time.monotonic() + authority.timeout_s
    key = scratch_key("backup")
    first, second = scratch_state(1), scratch_state(2)
    try:
        v1 = call_with_retries(
            authority,
            "put-v1",
            lambda c: c.put_object(Bucket=authority.bucket, Key=key, Body=first),
            deadline=deadline,
        )
        v2 = call_with_retries(
            authority,
            "put-v2",
            lambda c: c.put_object(Bucket=authority.bucket, Key=key, Body=second),
            deadline=deadline,
        )
        old, new = v1.get("VersionId"), v2.get("VersionId")
        if not old or old == "null" or old == new:
            raise StateAuthorityError(
                "versioning-disabled",
                "NoVersionId",
                f"writes to {authority.bucket!r} get no distinct version ids",
            )
        if get_bytes(authority, authority.bucket, key, deadline, old) != first:
            raise StateAuthorityError(
                "integrity-mismatch", "SHA256", "the older version reads back different bytes"
            )
        call_with_retries(
            authority,
            "restore",
            lambda c: c.copy_object(
                Bucket=authority.bucket,
                Key=key,
                CopySource={"Bucket": authority.bucket, "Key": key, "VersionId": old},
            ),
            deadline=deadline,
        )
        restored = get_bytes(authority, authority.bucket, key, deadline)
        if sha256(restored) != sha256(first):
            raise StateAuthorityError(
                "integrity-mismatch",
                "SHA256",
                "the restored state differs from the version restored",
            )
        return {
            "key": key,
            "restored_version": old,
            "replaced_version": new,
            "sha256": sha256(first),
        }
    finally:
        purge(authority, authority.bucket, key)


def backup_copy_restore_ok(
    backup_bucket: str = "",
    bucket: str = "",
    endpoint: str = "",
    timeout_s: float = 10.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Check a backup to ``backup_bucket`` and a restore from it, checksums verified.

    ``backup_bucket`` defaults to ``TOFU_STATE_BACKUP_BUCKET`` or
    ``<state bucket>-backup``. Copies a scratch state object there, deletes
    it from the state bucket, restores it from the backup and compares
    SHA-256 at each step. Returns the digests. Raises ``ActivityFailed``
    (``no-such-bucket`` when there is no backup bucket, ``integrity-mismatch``,
    or the failing call's class).
    """
    authority = activity_authority(endpoint, bucket, "", timeout_s, configuration, secrets)
    target = backup_bucket_of(authority, backup_bucket, configuration)
    deadline = time.monotonic() + authority.timeout_s
    key = scratch_key("backup")
    body = scratch_state(7)
    digest = sha256(body)
    try:
        call_with_retries(
            authority,
            "head-backup-bucket",
            lambda c: c.head_bucket(Bucket=target),
            deadline=deadline,
            subject=f"backup bucket {target!r}",
        )
        call_with_retries(
            authority,
            "put",
            lambda c: c.put_object(Bucket=authority.bucket, Key=key, Body=body),
            deadline=deadline,
        )
        call_with_retries(
            authority,
            "backup",
            lambda c: c.copy_object(
                Bucket=target, Key=key, CopySource={"Bucket": authority.bucket, "Key": key}
            ),
            deadline=deadline,
        )
        if sha256(get_bytes(authority, target, key, deadline)) != digest:
            raise StateAuthorityError(
                "integrity-mismatch", "SHA256", f"the backup copy in {target!r} differs"
            )
        purge(authority, authority.bucket, key)  # the loss the backup is for
        call_with_retries(
            authority,
            "restore",
            lambda c: c.copy_object(
                Bucket=authority.bucket, Key=key, CopySource={"Bucket": target, "Key": key}
            ),
            deadline=deadline,
        )
        if sha256(get_bytes(authority, authority.bucket, key, deadline)) != digest:
            raise StateAuthorityError(
                "integrity-mismatch", "SHA256", "the state restored from backup differs"
            )
        return {"key": key, "backup_bucket": target, "sha256": digest}
    finally:
        purge(authority, authority.bucket, key)
        with contextlib.suppress(StateAuthorityError):
            purge(authority, target, key)


def retention_rules_reported(
    bucket: str = "",
    endpoint: str = "",
    timeout_s: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Report the bucket's lifecycle and noncurrent-version retention rules.

    Having none is a finding, not a failure: returns ``{"rules": [],
    "findings": [...]}``. Raises ``ActivityFailed`` only when the bucket
    cannot be asked (unreachable, access denied, missing bucket).
    """
    authority = activity_authority(endpoint, bucket, "", timeout_s, configuration, secrets)
    rules, noncurrent = noncurrent_rules(authority)
    findings = []
    if not rules:
        findings.append("no lifecycle rules: every noncurrent state version is kept forever")
    elif not noncurrent:
        findings.append("no noncurrent-version rule: old state versions are never expired")
    return {
        "bucket": authority.bucket,
        "rules": rules,
        "noncurrent_version_days": noncurrent_days(noncurrent),
        "findings": findings,
    }


def state_key_backup_ok(
    max_backup_age_s: float = 86400.0,
    backup_bucket: str = "",
    backup_key: str = "",
    key: str = "",
    bucket: str = "",
    endpoint: str = "",
    timeout_s: float = 15.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Check the real state key's backup: its versions, a fresh backup copy, a restore.

    Reads (never writes) the protected state key: lists its versions
    (current and noncurrent) and the retention rule that keeps noncurrent
    versions; finds its copy in ``backup_bucket`` (``TOFU_STATE_BACKUP_BUCKET``,
    default ``<bucket>-backup``) under ``backup_key`` (``TOFU_STATE_BACKUP_KEY``,
    default the same key), which must be no older than ``max_backup_age_s`` and
    whose SHA-256 must equal one of the key's versions (the newest
    ``MAX_VERSIONS_COMPARED``); then restores the previous version (the newest
    noncurrent one; the current one when there is none) into a scratch key
    under ``_flywheel-chaos/`` and compares it byte for byte. Returns versions,
    retention, the backup's age and matching version, and the restore. Raises
    ``ActivityFailed``: ``no-such-key`` when there is no backup copy, ``other``
    (code ``BackupStale``) with its age when it is too old,
    ``integrity-mismatch`` when it matches no version or a restore differs.
    """
    max_backup_age_s = float(max_backup_age_s)  # a configuration value arrives as a string
    authority = activity_authority(endpoint, bucket, key, timeout_s, configuration, secrets)
    if not authority.key:
        raise StateAuthorityError(
            "other", "configuration", "no state key configured", "set TOFU_STATE_KEY"
        )
    if authority.key.startswith(CANARY_PREFIX):
        raise StateAuthorityError("other", "guard", "the state key is under the canary prefix")
    target = backup_bucket_of(authority, backup_bucket, configuration)
    copy_key = backup_key or settings.TOFU_STATE_BACKUP_KEY.get() or authority.key
    deadline = time.monotonic() + authority.timeout_s
    versions = state_key_versions(authority, deadline)
    _, rules = noncurrent_rules(authority, deadline)
    age_s = backup_head(authority, target, copy_key, deadline, max_backup_age_s)
    backup_digest = sha256(get_bytes(authority, target, copy_key, deadline))
    matched, digests = matching_version(authority, versions, backup_digest, deadline)
    previous = next((v for v in versions if not v.get("IsLatest")), versions[0])
    restored = restore_into_scratch(
        authority, previous["VersionId"], digests.get(previous["VersionId"]), deadline
    )
    return {
        "key": authority.key,
        "versions": len(versions),
        "noncurrent_versions": sum(1 for v in versions if not v.get("IsLatest")),
        "retention_noncurrent_days": noncurrent_days(rules),
        "backup": f"s3://{target}/{copy_key}",
        "backup_age_s": round(age_s, 1),
        "backup_matches_version": matched,
        "restored_version": previous["VersionId"],
        "restored_is_current": bool(previous.get("IsLatest")),
        "restore_sha256": restored,
    }
