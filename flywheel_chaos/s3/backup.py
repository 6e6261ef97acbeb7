"""Backup, restore and retention of state objects: the steps the backup probes compose.

Everything written is a scratch state object under ``_flywheel-chaos/``; the protected
state key is only ever read (its versions listed and read, one restored into a scratch key).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any, Final

from flywheel_chaos import settings
from flywheel_chaos.s3.authority import CANARY_PREFIX, StateAuthority
from flywheel_chaos.s3.client import call_with_retries
from flywheel_chaos.s3.errors import StateAuthorityError

__all__ = [
    "MAX_VERSIONS_COMPARED",
    "backup_bucket",
    "backup_head",
    "get_bytes",
    "matching_version",
    "noncurrent_days",
    "noncurrent_rules",
    "purge",
    "restore_into_scratch",
    "scratch_key",
    "scratch_state",
    "sha256",
    "state_key_versions",
]

MAX_VERSIONS_COMPARED: Final = 20
"""State-key versions whose bytes a backup copy is compared against (newest first)."""
_NO_LIFECYCLE: Final = ("NoSuchLifecycleConfiguration", "404", "NotImplemented")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def scratch_key(kind: str) -> str:
    return f"{CANARY_PREFIX}{kind}/{uuid.uuid4().hex}/terraform.tfstate"


def scratch_state(serial: int) -> bytes:
    """A state document of a scratch lineage (never the protected key's)."""
    document = {
        "version": 4,
        "terraform_version": "1.12.2",
        "serial": serial,
        "lineage": "flywheel-chaos-scratch",
        "outputs": {"nonce": {"value": uuid.uuid4().hex, "type": "string"}},
        "resources": [],
    }
    return json.dumps(document, indent=2).encode() + b"\n"


def backup_bucket(
    authority: StateAuthority, backup: str, configuration: Mapping[str, Any] | None
) -> str:
    """``backup``, else the configuration's or ``TOFU_STATE_BACKUP_BUCKET``, else ``<bucket>-backup``."""
    return backup or settings.from_config(
        configuration,
        "tofu_state_backup_bucket",
        settings.TOFU_STATE_BACKUP_BUCKET,
        default=f"{authority.bucket}-backup",
    )


def purge(authority: StateAuthority, bucket: str, key: str) -> None:
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


def get_bytes(
    authority: StateAuthority, bucket: str, key: str, deadline: float, version: str | None = None
) -> bytes:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version:
        kwargs["VersionId"] = version
    response = call_with_retries(
        authority, "get", lambda c: c.get_object(**kwargs), deadline=deadline, subject=key
    )
    return bytes(response["Body"].read())


def noncurrent_rules(
    authority: StateAuthority, deadline: float | None = None
) -> tuple[list[Any], list[Any]]:
    """(every lifecycle rule, the rules that expire or move noncurrent versions); none: ([], [])."""
    try:
        response = call_with_retries(
            authority,
            "get-lifecycle",
            lambda c: c.get_bucket_lifecycle_configuration(Bucket=authority.bucket),
            deadline=deadline,
        )
    except StateAuthorityError as exc:
        if exc.code not in _NO_LIFECYCLE:
            raise
        return [], []
    rules = list(response.get("Rules", []))
    noncurrent = [
        r
        for r in rules
        if "NoncurrentVersionExpiration" in r or "NoncurrentVersionTransitions" in r
    ]
    return rules, noncurrent


def noncurrent_days(rules: list[Any]) -> list[Any]:
    return [
        r["NoncurrentVersionExpiration"].get("NoncurrentDays")
        for r in rules
        if "NoncurrentVersionExpiration" in r
    ]


def state_key_versions(authority: StateAuthority, deadline: float) -> list[Any]:
    """The state key's versions, current first, then newest first; refuses none."""
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
    return versions


def backup_head(
    authority: StateAuthority, bucket: str, key: str, deadline: float, max_age_s: float
) -> float:
    """The age in seconds of the backup copy ``s3://bucket/key``; refuses a missing or stale one."""
    where = f"s3://{bucket}/{key}"
    try:
        head = call_with_retries(
            authority,
            "head-backup",
            lambda c: c.head_object(Bucket=bucket, Key=key),
            deadline=deadline,
            subject=f"backup copy {where}",
        )
    except StateAuthorityError as exc:
        if exc.error_class in ("no-such-key", "no-such-bucket"):
            raise StateAuthorityError(
                exc.error_class,
                exc.code,
                f"no backup copy of the state key at {where}",
                "back the state key up (a copy in the backup bucket) before trusting restores",
            ) from exc
        raise
    age_s = float(time.time() - head["LastModified"].timestamp())
    if age_s > max_age_s:
        raise StateAuthorityError(
            "other",
            "BackupStale",
            f"the backup copy {where} is {age_s:.0f} s old (more than max_backup_age_s {max_age_s:g})",
            "run the backup job; the newest state is not protected by a copy",
        )
    return age_s


def matching_version(
    authority: StateAuthority, versions: list[Any], digest: str, deadline: float
) -> tuple[str, dict[str, str]]:
    """The newest state-key version whose SHA-256 is ``digest``, and the digests read."""
    digests: dict[str, str] = {}
    for version in versions[:MAX_VERSIONS_COMPARED]:
        data = get_bytes(authority, authority.bucket, authority.key, deadline, version["VersionId"])
        digests[version["VersionId"]] = sha256(data)
        if digests[version["VersionId"]] == digest:
            return str(version["VersionId"]), digests
    raise StateAuthorityError(
        "integrity-mismatch",
        "SHA256",
        f"the backup copy matches none of the newest {len(digests)} version(s) of the state key",
    )


def restore_into_scratch(
    authority: StateAuthority, version: str, original: str | None, deadline: float
) -> str:
    """Copy state-key ``version`` into a scratch key, compare, remove it; the restored digest."""
    scratch = scratch_key("restore")
    try:
        call_with_retries(
            authority,
            "restore-version",
            lambda c: c.copy_object(
                Bucket=authority.bucket,
                Key=scratch,
                CopySource={"Bucket": authority.bucket, "Key": authority.key, "VersionId": version},
            ),
            deadline=deadline,
        )
        restored = sha256(get_bytes(authority, authority.bucket, scratch, deadline))
        expected = original or sha256(
            get_bytes(authority, authority.bucket, authority.key, deadline, version)
        )
        if restored != expected:
            raise StateAuthorityError(
                "integrity-mismatch", "SHA256", "the restored version differs from the original"
            )
        return restored
    finally:
        purge(authority, authority.bucket, scratch)
