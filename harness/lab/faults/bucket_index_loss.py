"""Chaos Toolkit actions: the bucket-index-loss fault (lab only), its recovery and its clean-up.

The incident that started the HA gate: the state authority answered
NoSuchBucket while the bucket's data was still on disk. This fault makes that
happen on purpose, on a **scratch bucket** of its own (``flywheel-chaos-index-
<run>``), never on the state bucket or the backup bucket, and only in the lab
(``FLYWHEEL_LAB_DIR`` names a lab with nodes): it talks to the server's
internals, which a production server must never be exposed to.

SeaweedFS (``interim-seaweedfs``, ``ha-seaweedfs``): deleting a bucket's filer
entry also deletes its collection, so the data would go with it, and the
filer refuses to rename a bucket. What keeps the data (tried on SeaweedFS
4.48): a ``filer.conf`` location rule puts the scratch bucket's objects into a
collection of their own (``<bucket>-kept``), the rule is removed again, and
the bucket entry is then deleted with ``skipChunkDeletion``: S3 answers
NoSuchBucket while ``<bucket>-kept_N.dat`` stays on the volume servers.

RustFS (``interim``, ``ha-rustfs``): removing a bucket's metadata
(``.rustfs.sys/buckets/<b>/.metadata.bin``) reproduces nothing, RustFS 1.0.1
rebuilds it from the bucket's directory. What does (tried on 1.0.1): the
bucket's directory leaves its drives while its metadata stays. The fault
moves ``<drive>/<bucket>`` to ``<drive>/.flywheel-chaos-kept-<bucket>`` on
every drive, on the same volume: S3 answers NoSuchBucket, ListBuckets leaves
it out, the markers under ``.rustfs.sys/buckets/<bucket>/`` and every
object's ``xl.meta`` stay on disk. A restart does not bring it back, and
after a restart CreateBucket answers NoSuchBucket too (before one it
re-creates the bucket), so the recovery, when CreateBucket refuses, first
puts the bucket's empty directory back on the drives (the operator's
``mkdir`` in the pod), then restores the objects from backup.

Recovery is a restore from the backup bucket (the fault copies every object
there first, its SHA-256 in the object's metadata), compared byte for byte;
neither server has a heal of its own for this, and the result says so. The
rollback removes the scratch bucket, its kept data and the backup copies (on
SeaweedFS also the location rule in ``filer.conf``); it is safe to run twice.
"""

import hashlib
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Final

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from flywheel_chaos import power, settings
from flywheel_chaos.kube.client import API_TIMEOUT, core_api
from flywheel_chaos.kube.safety import SafetyRefusal, require_lease
from flywheel_chaos.results import Result
from flywheel_chaos.s3.authority import CANARY_PREFIX, StateAuthority
from flywheel_chaos.s3.backup import backup_bucket
from flywheel_chaos.s3.checks import error_of, run_checks
from flywheel_chaos.s3.client import activity_authority
from flywheel_chaos.s3.errors import StateAuthorityError
from harness.lab.faults.index_internals import (
    EXISTS,
    RUSTFS_SYSTEM,
    filer_http,
    kept_files,
    rustfs_left,
    rustfs_lose,
    rustfs_markers,
    rustfs_remove,
    rustfs_repair,
    s3_call,
    seaweedfs_remove,
    set_rule,
    wait_head,
)

__all__ = [
    "guard_reports_bucket_missing",
    "lose_bucket_index",
    "remove_scratch_bucket",
    "restore_bucket_from_backup",
]

logger = logging.getLogger("flywheel_chaos.lab.faults")

SCRATCH_PREFIX: Final = "flywheel-chaos-index-"
OBJECT_PREFIX: Final = f"{CANARY_PREFIX}index-loss/"
"""The scratch bucket's objects live under the canary prefix too: the harness writes no
other key anywhere."""
SERVER_HEAL = {
    "seaweedfs": "none: SeaweedFS rebuilds no filer entry from volume data "
    "(fs.meta.load needs a metadata backup taken before)",
    "rustfs": "none: RustFS 1.0.1 re-creates no bucket directory from the bucket's metadata, "
    "not after a restart either",
}


# ------------------------------------------------------------------ target ---


def scratch_bucket(bucket: str = "") -> str:
    """The scratch bucket of this run (``flywheel-chaos-index-<run id>``), or ``bucket``."""
    if bucket:
        return bucket
    run = re.sub(r"[^a-z0-9-]", "-", settings.FLYWHEEL_RUN_ID.get().lower()).strip("-")
    if not run:
        raise ActivityFailed(
            "no run id to name the scratch bucket after (hint: run the experiment with "
            "chaos run and its harness.controls.safety control)"
        )
    return (SCRATCH_PREFIX + run)[:63].rstrip("-")


def guard_reports_bucket_missing(
    bucket: str = "",
    key: str = OBJECT_PREFIX + "object-0",
    timeout_s: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Run the pre-mutation guard's checks against a lost scratch bucket; succeed when they fail
    closed with ``no-such-bucket``.

    ``bucket`` defaults to this run's scratch bucket ,
    ``key`` to one of its objects; the checks only HEAD that key and write
    nothing where the bucket is missing. Returns ``{"bucket", "key",
    "guard_passed", "failed": [{"check", "class"}]}``. Raises
    ``ActivityFailed`` when the guard passes, or fails without any check
    naming ``no-such-bucket`` (the incident's answer).
    """
    name = scratch_bucket(bucket)
    authority = activity_authority("", name, key, timeout_s, configuration, secrets)
    results = run_checks(authority)
    failed = [{"check": r["name"], "class": error_of(r)["class"]} for r in results if not r["ok"]]
    answer = {"bucket": name, "key": key, "guard_passed": not failed, "failed": failed}
    if not failed:
        raise ActivityFailed(f"the guard passed against {name}: the bucket is not lost")
    if not any(f["class"] == "no-such-bucket" for f in failed):
        raise ActivityFailed(
            f"the guard failed against {name}, but no check said no-such-bucket: {failed}"
        )
    return answer


def _backup_bucket(authority: StateAuthority, configuration: Configuration) -> str:
    return backup_bucket(authority, "", configuration)


def _backup_prefix(bucket: str) -> str:
    return f"{CANARY_PREFIX}index-loss/{bucket}/"


def _check_target(bucket: str, authority: StateAuthority, configuration: Configuration) -> Path:
    """Refuse before anything changes: outside a lab, or on a bucket that is not scratch."""
    lab = power.lab_dir(configuration)
    if not lab or not (Path(lab) / "nodes").is_dir():
        raise SafetyRefusal(
            "refused: bucket-index-loss runs only in a lab (FLYWHEEL_LAB_DIR names none"
            f"{': ' + lab if lab else ''}; hint: source .lab/env)"
        )
    protected = {authority.bucket, _backup_bucket(authority, configuration)}
    if bucket in protected:
        raise SafetyRefusal(
            f"refused: {bucket!r} is the state authority's own bucket; bucket-index-loss "
            "only ever touches a scratch bucket of its run"
        )
    if not bucket.startswith(SCRATCH_PREFIX):
        raise SafetyRefusal(
            f"refused: {bucket!r} is not a scratch bucket (its name must start with "
            f"{SCRATCH_PREFIX!r})"
        )
    return Path(lab)


def _server(configuration: Configuration) -> tuple[str, str]:
    """Which server the state authority runs and its filer's loopback address (the lab's
    pods listen on the loopback twin 127.A.B.C of their API address 10.A.B.C)."""
    namespace = settings.from_config(
        configuration, "flywheel_state_namespace", settings.FLYWHEEL_STATE_NAMESPACE
    )
    selector = settings.from_config(
        configuration,
        "flywheel_state_selector",
        settings.FLYWHEEL_STATE_SELECTOR,
        default="app.kubernetes.io/name=attic-rustfs-openebs",
    )
    pods = core_api(configuration).list_namespaced_pod(
        namespace, label_selector=selector, _request_timeout=API_TIMEOUT
    )
    for pod in pods.items:
        if not pod.status.pod_ip or pod.metadata.deletion_timestamp is not None:
            continue
        for container in pod.spec.containers:
            words = [*(container.command or []), *(container.args or [])]
            if any(Path(w).name == "rustfs" for w in words[:1]):
                return "rustfs", ""
            if words and Path(words[0]).name == "weed":
                if "filer" not in words and "-filer" not in words:
                    continue
                # weed server -filer -filer.port=P, or weed filer -port=P
                flag = "-filer.port=" if "-filer" in words else "-port="
                port = next((w.split("=", 1)[1] for w in words if w.startswith(flag)), "8888")
                return "seaweedfs", f"http://127.{pod.status.pod_ip.split('.', 1)[1]}:{port}"
    raise ActivityFailed(
        f"no running pod of {namespace}/{selector} runs a server bucket-index-loss knows "
        "(RustFS, or SeaweedFS with a filer)"
    )


# ----------------------------------------------------------------- actions ---


def _write_objects(
    authority: StateAuthority, name: str, backup: str, objects: int, size_bytes: int
) -> list[dict[str, Any]]:
    """Create ``name`` with ``objects`` random objects, each copied to the backup bucket."""
    s3_call(authority, "create-bucket", lambda c: c.create_bucket(Bucket=name))
    written = []
    for index in range(objects):
        key = f"{OBJECT_PREFIX}object-{index}"
        body = os.urandom(size_bytes)
        digest = hashlib.sha256(body).hexdigest()

        def put(c: Any, key: str = key, body: bytes = body, digest: str = digest) -> Any:
            return c.put_object(Bucket=name, Key=key, Body=body, Metadata={"sha256": digest})

        s3_call(authority, "put", put)

        def copy(c: Any, key: str = key) -> Any:
            return c.copy_object(
                Bucket=backup,
                Key=_backup_prefix(name) + key[len(OBJECT_PREFIX) :],
                CopySource={"Bucket": name, "Key": key},
            )

        s3_call(authority, "backup", copy)
        written.append({"key": key, "sha256": digest, "size": size_bytes})
    return written


def lose_bucket_index(
    bucket: str = "",
    objects: int = 3,
    size_bytes: int = 65536,
    wait_missing_s: float = 20.0,
    dry_run: bool = False,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Lose a scratch bucket's index while its objects stay on disk (lab only).

    Creates ``bucket`` (default ``flywheel-chaos-index-<run id>``) with
    ``objects`` objects of ``size_bytes``, copies each to the backup bucket
    under ``_flywheel-chaos/index-loss/<bucket>/`` (SHA-256 in its metadata),
    then loses the bucket's index and waits until S3 answers NoSuchBucket:
    on SeaweedFS the bucket's filer entry is deleted without its chunks (kept
    in a collection of their own); on RustFS the bucket's directory moves
    aside on every drive while its metadata stays. Refused outside a lab, on
    the state or backup bucket, on a bucket not named as a scratch bucket and
    without this run's lease. Returns ``{"bucket", "server", "objects":
    [{"key", "sha256", "size"}], "backup_bucket", "backup_prefix",
    "missing_after_s", "kept_on_disk", "markers_on_disk", "took_effect",
    "dry_run"}``.
    """
    authority = activity_authority("", "", "", 10.0, configuration, secrets)
    name = scratch_bucket(bucket)
    lab = _check_target(name, authority, configuration)
    if objects < 1 or size_bytes < 1:
        raise SafetyRefusal(
            f"refused: objects and size_bytes must be >= 1 ({objects}, {size_bytes})"
        )
    server, filer = _server(configuration)
    backup = _backup_bucket(authority, configuration)
    plan: Result = {
        "bucket": name,
        "server": server,
        "backup_bucket": backup,
        "backup_prefix": _backup_prefix(name),
        "objects": [],
        "took_effect": False,
        "dry_run": dry_run,
    }
    if dry_run:
        return plan
    require_lease(configuration)
    if server == "rustfs":
        plan["objects"] = _write_objects(authority, name, backup, objects, size_bytes)
        plan["kept_on_disk"] = rustfs_lose(lab, name)
        plan["missing_after_s"] = wait_head(authority, name, wait_missing_s, missing=True)
        plan["markers_on_disk"] = rustfs_markers(lab, name)
        if not plan["markers_on_disk"]:
            raise ActivityFailed(
                f"{name} is reported missing but no drive holds {RUSTFS_SYSTEM}/buckets/{name}: "
                "its metadata did not stay on disk, so this is not the incident's shape"
            )
    else:
        plan.update(
            _seaweedfs_lose(
                authority, lab, filer, name, backup, (objects, size_bytes), wait_missing_s
            )
        )
    plan["took_effect"] = bool(plan["kept_on_disk"])
    if not plan["kept_on_disk"]:
        raise ActivityFailed(
            f"{name} is reported missing but none of its data is on the lab's volumes "
            "(SeaweedFS: <bucket>-kept_*.dat; RustFS: xl.meta under the kept directory): "
            "the data did not stay on disk, so this is not the incident's shape"
        )
    return plan


def _seaweedfs_lose(
    authority: StateAuthority,
    lab: Path,
    filer: str,
    name: str,
    backup: str,
    counts: tuple[int, int],
    wait_missing_s: float,
) -> Result:
    """Write the objects into a kept collection, then delete the filer entry, chunks kept."""
    set_rule(filer, name, present=True)
    try:
        written = _write_objects(authority, name, backup, *counts)
    finally:
        # the rule must be gone before the entry is deleted, or the delete takes the kept
        # collection (the data) with it
        set_rule(filer, name, present=False)
    url = f"{filer}/buckets/{name}?recursive=true&skipChunkDeletion=true"
    status, data = filer_http("DELETE", url)
    if status not in (200, 202, 204):
        raise ActivityFailed(f"deleting the filer entry of {name}: HTTP {status} {data[:200]!r}")
    logger.warning("bucket-index-loss: deleted the filer entry of %s, chunks kept", name)
    missing_after = wait_head(authority, name, wait_missing_s, missing=True)
    kept = kept_files(lab, name)
    return {
        "objects": written,
        "missing_after_s": missing_after,
        "kept_on_disk": kept,
        "markers_on_disk": kept,
    }


def restore_bucket_from_backup(
    bucket: str = "",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Recover a lost scratch bucket from the backup bucket, byte-identical.

    Re-creates ``bucket`` (default: this run's scratch bucket), copies every
    object back from ``_flywheel-chaos/index-loss/<bucket>/`` in the backup
    bucket and compares the SHA-256 of what it reads back with the digest the
    object was written with. When RustFS's CreateBucket answers NoSuchBucket
    (it does after a restart while the lost bucket's metadata stays), the
    bucket's empty directory is put back on the drives first; ``index_repair``
    says what CreateBucket answered and where.
    Returns ``{"bucket", "restored": [{"key", "sha256", "identical", "path"}],
    "index_repair", "server_heal"}``. Raises ``ActivityFailed`` when nothing
    was backed up or any object differs.
    """
    authority = activity_authority("", "", "", 10.0, configuration, secrets)
    name = scratch_bucket(bucket)
    lab = _check_target(name, authority, configuration)
    server, filer = _server(configuration)
    require_lease(configuration)
    backup = _backup_bucket(authority, configuration)
    prefix = _backup_prefix(name)
    listing = s3_call(
        authority, "list-backup", lambda c: c.list_objects_v2(Bucket=backup, Prefix=prefix)
    )
    keys = [item["Key"] for item in listing.get("Contents", [])]
    if not keys:
        raise ActivityFailed(f"nothing to restore: no object under s3://{backup}/{prefix}")
    repair: Result = {"create_bucket": "created"}
    if server != "rustfs":
        # the restored objects go to the kept collection too, so that the rollback's one
        # delete removes everything this run wrote
        set_rule(filer, name, present=True)
    try:
        s3_call(authority, "create-bucket", lambda c: c.create_bucket(Bucket=name))
    except StateAuthorityError as exc:
        if exc.code in EXISTS:
            repair["create_bucket"] = str(exc.code)
        elif server == "rustfs" and exc.error_class == "no-such-bucket":
            repair["create_bucket"] = "NoSuchBucket"
            repair["directories"] = rustfs_repair(lab, name)
            repair["present_after_s"] = wait_head(authority, name, 20.0, missing=False)
            logger.warning("bucket-index-loss: put %s back on %s", name, repair["directories"])
        else:
            raise
    restored = []
    for source in keys:
        key = OBJECT_PREFIX + source[len(prefix) :]

        def copy(c: Any, key: str = key, source: str = source) -> Any:
            return c.copy_object(Bucket=name, Key=key, CopySource={"Bucket": backup, "Key": source})

        s3_call(authority, "restore", copy)
        answer = s3_call(authority, "get", lambda c, key=key: c.get_object(Bucket=name, Key=key))
        body = answer["Body"].read()
        digest = hashlib.sha256(body).hexdigest()
        expected = (answer.get("Metadata") or {}).get("sha256")
        restored.append(
            {"key": key, "sha256": digest, "identical": digest == expected, "path": "backup"}
        )
    different = [r["key"] for r in restored if not r["identical"]]
    if different:
        raise ActivityFailed(f"restored objects differ from what was written: {different}")
    return {
        "bucket": name,
        "restored": restored,
        "index_repair": repair,
        "server_heal": SERVER_HEAL.get(server, "none"),
    }


def remove_scratch_bucket(
    bucket: str = "",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Rollback: remove this run's scratch bucket, its kept data and its backup copies.

    Safe to run twice and after a fault that stopped half-way; needs no lease
    (it only ever touches this run's scratch names). Returns ``{"bucket",
    "removed_backup_copies", "kept_left_on_disk"}``.
    """
    authority = activity_authority("", "", "", 10.0, configuration, secrets)
    name = scratch_bucket(bucket)
    lab = _check_target(name, authority, configuration)
    server, filer = _server(configuration)
    if server == "rustfs":
        rustfs_remove(authority, lab, name)
    else:
        seaweedfs_remove(authority, filer, name)

    def left() -> list[str]:
        if server == "rustfs":
            return rustfs_left(lab, name)
        # both collections: <bucket>_N and <bucket>-kept_N
        return kept_files(lab, name) + kept_files(lab, name, "{bucket}_*.dat")

    removed = _remove_backup_copies(authority, configuration, name)
    deadline = time.monotonic() + 10.0  # servers drop a deleted bucket's files promptly
    while left() and time.monotonic() < deadline:
        time.sleep(0.5)
    return {"bucket": name, "removed_backup_copies": removed, "kept_left_on_disk": left()}


def _remove_backup_copies(
    authority: StateAuthority, configuration: Configuration, name: str
) -> int:
    backup = _backup_bucket(authority, configuration)
    prefix = _backup_prefix(name)
    listing = s3_call(
        authority,
        "list-backup-versions",
        lambda c: c.list_object_versions(Bucket=backup, Prefix=prefix),
    )
    removed = 0
    for item in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
        if item["Key"].startswith(prefix):  # never anything but this run's copies

            def delete(c: Any, key: str = item["Key"], version: str = item["VersionId"]) -> Any:
                return c.delete_object(Bucket=backup, Key=key, VersionId=version)

            s3_call(authority, "delete", delete)
            removed += 1
    return removed
