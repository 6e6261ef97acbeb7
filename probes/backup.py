"""Chaos Toolkit probes of backup, restore, retention and versioning behaviour.

Every object they write is a scratch state object under ``_flywheel-chaos/``
(in the state bucket and in the backup bucket); the protected state key is
only ever read (:func:`state_key_backup_ok` lists its versions, reads them and
restores one into a scratch key), never written. Scratch objects, all their
versions included, are removed afterwards, also when a check fails.
"""

import contextlib
import hashlib
import json
import os
import time
import uuid
from typing import Any, Dict  # noqa: UP035 - chaos discover types only typing.Dict as "mapping"

from chaoslib.types import Configuration, Secrets

from probes.failures import StateAuthorityError
from probes.s3client import CANARY_PREFIX, StateAuthority, activity_authority, call_with_retries

Result = Dict[str, Any]  # noqa: UP006

__all__ = [
    "backup_copy_restore_ok",
    "retention_rules_reported",
    "state_key_backup_ok",
    "versioned_restore_ok",
]


def _scratch_state(serial: int) -> bytes:
    return (
        json.dumps(
            {
                "version": 4,
                "terraform_version": "1.12.2",
                "serial": serial,
                "lineage": "flywheel-chaos-scratch",
                "outputs": {"nonce": {"value": uuid.uuid4().hex, "type": "string"}},
                "resources": [],
            },
            indent=2,
        ).encode()
        + b"\n"
    )


def _purge(authority: StateAuthority, bucket: str, key: str) -> None:
    """Remove every version and delete marker of a scratch key."""
    if not key.startswith(CANARY_PREFIX):
        raise StateAuthorityError(
            "other", "guard", f"refusing to purge {key!r} outside {CANARY_PREFIX}"
        )
    deadline = time.monotonic() + 5
    listing = call_with_retries(
        authority,
        "list-versions",
        lambda c: c.list_object_versions(Bucket=bucket, Prefix=key),
        deadline=deadline,
    )
    for item in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
        if item["Key"] == key:
            version: str = item["VersionId"]

            def delete(c: Any, version: str = version) -> Any:
                return c.delete_object(Bucket=bucket, Key=key, VersionId=version)

            call_with_retries(authority, "purge", delete, deadline=deadline)


def _get(
    authority: StateAuthority, bucket: str, key: str, deadline: float, version: str | None = None
) -> bytes:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version:
        kwargs["VersionId"] = version
    response = call_with_retries(
        authority, "get", lambda c: c.get_object(**kwargs), deadline=deadline, subject=key
    )
    return bytes(response["Body"].read())


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
    key = f"{CANARY_PREFIX}backup/{uuid.uuid4().hex}/terraform.tfstate"
    first, second = _scratch_state(1), _scratch_state(2)
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
        if _get(authority, authority.bucket, key, deadline, old) != first:
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
        restored = _get(authority, authority.bucket, key, deadline)
        if hashlib.sha256(restored).digest() != hashlib.sha256(first).digest():
            raise StateAuthorityError(
                "integrity-mismatch",
                "SHA256",
                "the restored state differs from the version restored",
            )
        return {
            "key": key,
            "restored_version": old,
            "replaced_version": new,
            "sha256": hashlib.sha256(first).hexdigest(),
        }
    finally:
        _purge(authority, authority.bucket, key)


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
    target = (
        backup_bucket
        or (configuration or {}).get("tofu_state_backup_bucket")
        or os.environ.get("TOFU_STATE_BACKUP_BUCKET")
        or f"{authority.bucket}-backup"
    )
    deadline = time.monotonic() + authority.timeout_s
    key = f"{CANARY_PREFIX}backup/{uuid.uuid4().hex}/terraform.tfstate"
    body = _scratch_state(7)
    digest = hashlib.sha256(body).hexdigest()
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
        if hashlib.sha256(_get(authority, target, key, deadline)).hexdigest() != digest:
            raise StateAuthorityError(
                "integrity-mismatch", "SHA256", f"the backup copy in {target!r} differs"
            )
        _purge(authority, authority.bucket, key)  # the loss the backup is for
        call_with_retries(
            authority,
            "restore",
            lambda c: c.copy_object(
                Bucket=authority.bucket, Key=key, CopySource={"Bucket": target, "Key": key}
            ),
            deadline=deadline,
        )
        if hashlib.sha256(_get(authority, authority.bucket, key, deadline)).hexdigest() != digest:
            raise StateAuthorityError(
                "integrity-mismatch", "SHA256", "the state restored from backup differs"
            )
        return {"key": key, "backup_bucket": target, "sha256": digest}
    finally:
        _purge(authority, authority.bucket, key)
        with contextlib.suppress(StateAuthorityError):
            _purge(authority, target, key)


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
    try:
        response = call_with_retries(
            authority,
            "get-lifecycle",
            lambda c: c.get_bucket_lifecycle_configuration(Bucket=authority.bucket),
        )
        rules = response.get("Rules", [])
    except StateAuthorityError as exc:
        if exc.code not in ("NoSuchLifecycleConfiguration", "404", "NotImplemented"):
            raise
        rules = []
    findings = []
    noncurrent = [
        r
        for r in rules
        if "NoncurrentVersionExpiration" in r or "NoncurrentVersionTransitions" in r
    ]
    if not rules:
        findings.append("no lifecycle rules: every noncurrent state version is kept forever")
    elif not noncurrent:
        findings.append("no noncurrent-version rule: old state versions are never expired")
    return {
        "bucket": authority.bucket,
        "rules": rules,
        "noncurrent_version_days": [
            r["NoncurrentVersionExpiration"].get("NoncurrentDays")
            for r in noncurrent
            if "NoncurrentVersionExpiration" in r
        ],
        "findings": findings,
    }


MAX_VERSIONS_COMPARED = 20
"""State-key versions whose bytes a backup copy is compared against (newest first)."""


def _retention(authority: StateAuthority, deadline: float) -> list[Any]:
    try:
        response = call_with_retries(
            authority,
            "get-lifecycle",
            lambda c: c.get_bucket_lifecycle_configuration(Bucket=authority.bucket),
            deadline=deadline,
        )
    except StateAuthorityError as exc:
        if exc.code not in ("NoSuchLifecycleConfiguration", "404", "NotImplemented"):
            raise
        return []
    return [
        r
        for r in response.get("Rules", [])
        if "NoncurrentVersionExpiration" in r or "NoncurrentVersionTransitions" in r
    ]


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
    target = (
        backup_bucket
        or (configuration or {}).get("tofu_state_backup_bucket")
        or os.environ.get("TOFU_STATE_BACKUP_BUCKET")
        or f"{authority.bucket}-backup"
    )
    copy_key = backup_key or os.environ.get("TOFU_STATE_BACKUP_KEY") or authority.key
    deadline = time.monotonic() + authority.timeout_s
    listing = call_with_retries(
        authority,
        "list-versions",
        lambda c: c.list_object_versions(Bucket=authority.bucket, Prefix=authority.key),
        deadline=deadline,
    )
    versions = sorted(
        (v for v in listing.get("Versions", []) if v["Key"] == authority.key),
        key=lambda v: (not v.get("IsLatest"), -v["LastModified"].timestamp()),
    )
    if not versions:
        raise StateAuthorityError("no-such-key", "NoSuchKey", f"{authority.key} has no versions")
    rules = _retention(authority, deadline)
    try:
        head = call_with_retries(
            authority,
            "head-backup",
            lambda c: c.head_object(Bucket=target, Key=copy_key),
            deadline=deadline,
            subject=f"backup copy s3://{target}/{copy_key}",
        )
    except StateAuthorityError as exc:
        if exc.error_class in ("no-such-key", "no-such-bucket"):
            raise StateAuthorityError(
                exc.error_class,
                exc.code,
                f"no backup copy of the state key at s3://{target}/{copy_key}",
                "back the state key up (a copy in the backup bucket) before trusting restores",
            ) from exc
        raise
    age_s = time.time() - head["LastModified"].timestamp()
    if age_s > max_backup_age_s:
        raise StateAuthorityError(
            "other",
            "BackupStale",
            f"the backup copy s3://{target}/{copy_key} is {age_s:.0f} s old "
            f"(more than max_backup_age_s {max_backup_age_s:g})",
            "run the backup job; the newest state is not protected by a copy",
        )
    backup_digest = hashlib.sha256(_get(authority, target, copy_key, deadline)).hexdigest()
    matched = None
    digests: dict[str, str] = {}
    for version in versions[:MAX_VERSIONS_COMPARED]:
        data = _get(authority, authority.bucket, authority.key, deadline, version["VersionId"])
        digests[version["VersionId"]] = hashlib.sha256(data).hexdigest()
        if digests[version["VersionId"]] == backup_digest:
            matched = version["VersionId"]
            break
    if matched is None:
        raise StateAuthorityError(
            "integrity-mismatch",
            "SHA256",
            f"the backup copy matches none of the newest {len(digests)} version(s) of the state key",
        )
    previous = next((v for v in versions if not v.get("IsLatest")), versions[0])
    scratch = f"{CANARY_PREFIX}restore/{uuid.uuid4().hex}/terraform.tfstate"
    try:
        call_with_retries(
            authority,
            "restore-version",
            lambda c: c.copy_object(
                Bucket=authority.bucket,
                Key=scratch,
                CopySource={
                    "Bucket": authority.bucket,
                    "Key": authority.key,
                    "VersionId": previous["VersionId"],
                },
            ),
            deadline=deadline,
        )
        restored = hashlib.sha256(_get(authority, authority.bucket, scratch, deadline)).hexdigest()
        original = (
            digests.get(previous["VersionId"])
            or hashlib.sha256(
                _get(authority, authority.bucket, authority.key, deadline, previous["VersionId"])
            ).hexdigest()
        )
        if restored != original:
            raise StateAuthorityError(
                "integrity-mismatch", "SHA256", "the restored version differs from the original"
            )
    finally:
        _purge(authority, authority.bucket, scratch)
    return {
        "key": authority.key,
        "versions": len(versions),
        "noncurrent_versions": sum(1 for v in versions if not v.get("IsLatest")),
        "retention_noncurrent_days": [
            r["NoncurrentVersionExpiration"].get("NoncurrentDays")
            for r in rules
            if "NoncurrentVersionExpiration" in r
        ],
        "backup": f"s3://{target}/{copy_key}",
        "backup_age_s": round(age_s, 1),
        "backup_matches_version": matched,
        "restored_version": previous["VersionId"],
        "restored_is_current": bool(previous.get("IsLatest")),
        "restore_sha256": restored,
    }
