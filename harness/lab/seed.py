"""Seeding the lab's state authority: buckets, versioning, the state key and its backup copy."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from flywheel_chaos.s3.authority import StateAuthority, load_authority
from flywheel_chaos.s3.checks import check_canary_round_trip, check_state_key
from flywheel_chaos.s3.client import s3_client
from flywheel_chaos.s3.errors import StateAuthorityError
from harness.errors import HarnessError
from harness.lab import stack
from harness.processes import retry_until

STATE_BUCKET: Final = "tofu-state"
BACKUP_BUCKET: Final = "tofu-state-backup"
STATE_KEY: Final = "gloriousflywheel/platform/terraform.tfstate"
SEED_TIMEOUT_S: Final = 120.0
"""How long ``up`` waits for the state authority to serve reads and writes."""
SEED_STATE: Final = (
    b'{"version": 4, "terraform_version": "1.12.2", "serial": 42, '
    b'"lineage": "flywheel-lab-seed", "outputs": {}, "resources": []}\n'
)


def _lab_authority(endpoint: str, creds: dict[str, str]) -> StateAuthority:
    """The lab's state key at ``endpoint`` with the lab's credentials (nothing from the
    environment), reads bounded at 5 s."""
    return load_authority(
        endpoint=endpoint,
        bucket=STATE_BUCKET,
        key=STATE_KEY,
        region="us-east-1",
        timeout_s=10.0,
        secrets={
            "aws_access_key_id": creds["access_key"],
            "aws_secret_access_key": creds["secret_key"],
        },
        environ={},
    ).with_overrides(read_timeout_s=5.0)


def seed(
    endpoint: str,
    creds: dict[str, str],
    logs: Path,
    progress: Callable[[str], None],
    root: Path | None = None,
    tofu: Path | None = None,
) -> None:
    """Wait until the state authority serves reads *and* writes, then seed it.

    A replicated SeaweedFS answers ListBuckets before its masters have grown volumes on two
    racks, so the first write can hang for seconds on a busy machine: every step is retried
    (each attempt bounded by the client's timeouts) until :data:`SEED_TIMEOUT_S`. Writes are
    proven by the checks' own canary round trip; the state key is written only when HEAD
    says it is absent, so a write that timed out but landed is not written twice. With
    ``tofu`` (and the lab's ``root``), the key is seeded by ``tofu apply`` of the lab's
    stack (:mod:`harness.lab.stack`): real state, so a plan of it is a no-op.
    """
    authority = _lab_authority(endpoint, creds)
    s3 = s3_client(authority)
    started = time.monotonic()

    def left() -> float:
        return max(1.0, SEED_TIMEOUT_S - (time.monotonic() - started))

    def buckets_ready() -> None:
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        for name in (STATE_BUCKET, BACKUP_BUCKET):
            if name not in existing:
                s3.create_bucket(Bucket=name)
        s3.put_bucket_versioning(Bucket=STATE_BUCKET, VersioningConfiguration={"Status": "Enabled"})

    def seeded() -> bool:
        try:
            check_state_key(authority)
            if tofu is not None and root is not None:
                stack.init_only(root, authority, tofu)
            return False
        except StateAuthorityError as exc:
            if exc.error_class != "no-such-key":
                raise
        if tofu is not None and root is not None:
            stack.seed_with_apply(root, authority, tofu)
        else:
            s3.put_object(Bucket=STATE_BUCKET, Key=STATE_KEY, Body=SEED_STATE)
        return True

    def backed_up() -> None:
        # what an operator's backup job leaves: a copy of the state key in the backup bucket
        # (the backup-restore proof checks it against the key)
        s3.copy_object(
            Bucket=BACKUP_BUCKET,
            Key=STATE_KEY,
            CopySource={"Bucket": STATE_BUCKET, "Key": STATE_KEY},
        )

    try:
        retry_until(buckets_ready, left(), f"creating the lab's buckets at {endpoint}")
        progress(f"S3 answers at {endpoint} after {time.monotonic() - started:.1f}s")
        retry_until(
            lambda: check_canary_round_trip(authority),
            left(),
            f"a canary write and read at {endpoint}",
        )
        progress(f"S3 accepts writes after {time.monotonic() - started:.1f}s")
        if retry_until(seeded, left(), f"seeding s3://{STATE_BUCKET}/{STATE_KEY}"):
            progress(f"seeded s3://{STATE_BUCKET}/{STATE_KEY}")
        retry_until(backed_up, left(), f"backing s3://{STATE_BUCKET}/{STATE_KEY} up")
    except TimeoutError as error:
        raise HarnessError(
            f"the state authority did not serve S3 at {endpoint}: {error}",
            f"see the pods' logs under {logs}; everything started was stopped",
        ) from error
    progress(f"state authority serves S3 at {endpoint}")
