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
import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict  # noqa: UP035 - chaos discover types only typing.Dict as "mapping"

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from actions.cluster import API_TIMEOUT, SafetyRefusal, core_api, require_lease, setting
from probes.buckets import OBJECT_PREFIX, SCRATCH_PREFIX, scratch_bucket
from probes.failures import StateAuthorityError
from probes.s3client import CANARY_PREFIX, StateAuthority, activity_authority, call_with_retries

Result = Dict[str, Any]  # noqa: UP006

__all__ = ["lose_bucket_index", "remove_scratch_bucket", "restore_bucket_from_backup"]

logger = logging.getLogger("flywheel_chaos.actions")

FILER_CONF = "/etc/seaweedfs/filer.conf"
HTTP_TIMEOUT_S = 5.0
_EXISTS = ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")
SERVER_HEAL = {
    "seaweedfs": "none: SeaweedFS rebuilds no filer entry from volume data "
    "(fs.meta.load needs a metadata backup taken before)",
    "rustfs": "none: RustFS 1.0.1 re-creates no bucket directory from the bucket's metadata, "
    "not after a restart either",
}
RUSTFS_SYSTEM = ".rustfs.sys"
RUSTFS_KEPT = ".flywheel-chaos-kept-{bucket}"
"""Where a RustFS drive keeps the scratch bucket's directory while its index is lost: on the
same volume, under a name no bucket can have (bucket names never start with a dot)."""


# ------------------------------------------------------------------ target ---


def _backup_bucket(authority: StateAuthority, configuration: Configuration) -> str:
    return setting(
        configuration,
        "tofu_state_backup_bucket",
        "TOFU_STATE_BACKUP_BUCKET",
        f"{authority.bucket}-backup",
    )


def _backup_prefix(bucket: str) -> str:
    return f"{CANARY_PREFIX}index-loss/{bucket}/"


def _check_target(bucket: str, authority: StateAuthority, configuration: Configuration) -> Path:
    """Refuse before anything changes: outside a lab, or on a bucket that is not scratch."""
    lab = setting(configuration, "flywheel_lab_dir", "FLYWHEEL_LAB_DIR")
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
    namespace = setting(
        configuration, "flywheel_state_namespace", "FLYWHEEL_STATE_NAMESPACE", "nix-cache"
    )
    selector = setting(
        configuration,
        "flywheel_state_selector",
        "FLYWHEEL_STATE_SELECTOR",
        "app.kubernetes.io/name=attic-rustfs-openebs",
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


# ------------------------------------------------------------------ RustFS ---


def _rustfs_drives(lab: Path) -> list[Path]:
    """The lab's RustFS drives: its nodes' volume directories that hold ``.rustfs.sys``."""
    return sorted(p.parent for p in (lab / "nodes").glob(f"*/volumes/*/{RUSTFS_SYSTEM}"))


def _kept_dir(drive: Path, bucket: str) -> Path:
    return drive / RUSTFS_KEPT.format(bucket=bucket)


def _rustfs_kept(lab: Path, bucket: str) -> list[Path]:
    return [_kept_dir(d, bucket) for d in _rustfs_drives(lab)]


def _rustfs_markers(lab: Path, bucket: str) -> list[str]:
    """The bucket's metadata directories on the drives (``.rustfs.sys/buckets/<bucket>``)."""
    return [
        str(d.relative_to(lab) / RUSTFS_SYSTEM / "buckets" / bucket)
        for d in _rustfs_drives(lab)
        if (d / RUSTFS_SYSTEM / "buckets" / bucket).is_dir()
    ]


def _rustfs_lose(lab: Path, bucket: str) -> list[str]:
    """Move the bucket's directory aside on every drive; the kept files, relative to ``lab``."""
    moved = []
    for drive in _rustfs_drives(lab):
        if (drive / bucket).is_dir():
            os.rename(drive / bucket, _kept_dir(drive, bucket))
            moved.append(drive)
    if not moved:
        raise ActivityFailed(
            f"no RustFS drive of the lab holds a directory for {bucket}: nothing to lose"
        )
    logger.warning("bucket-index-loss: moved %s aside on %d drives", bucket, len(moved))
    return sorted(
        str(p.relative_to(lab))
        for drive in moved
        for p in _kept_dir(drive, bucket).rglob("xl.meta")
    )


def _rustfs_repair(lab: Path, bucket: str) -> list[str]:
    """Put the bucket's (empty) directory back on each drive whose metadata still names it."""
    repaired = []
    for drive in _rustfs_drives(lab):
        lost = not (drive / bucket).exists()
        named = (drive / RUSTFS_SYSTEM / "buckets" / bucket).is_dir()
        if lost and (named or _kept_dir(drive, bucket).is_dir()):
            (drive / bucket).mkdir()
            repaired.append(str((drive / bucket).relative_to(lab)))
    return repaired


# ------------------------------------------------------------------ filer ---


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def _conf(filer: str) -> dict[str, Any]:
    status, data = _http("GET", filer + FILER_CONF)
    if status == 404 or not data.strip():
        return {"version": 0, "locations": []}
    if status != 200:
        raise ActivityFailed(f"reading {FILER_CONF} from the filer: HTTP {status}")
    loaded: dict[str, Any] = json.loads(data)
    loaded.setdefault("locations", [])
    return loaded


def _put_conf(filer: str, conf: dict[str, Any]) -> None:
    status, data = _http("PUT", filer + FILER_CONF, json.dumps(conf).encode())
    if status not in (200, 201, 204):
        raise ActivityFailed(f"writing {FILER_CONF} to the filer: HTTP {status} {data[:200]!r}")


def _set_rule(filer: str, bucket: str, present: bool) -> None:
    """Add (or remove) the location rule that puts ``bucket``'s objects in ``<bucket>-kept``."""
    conf = _conf(filer)
    prefix = f"/buckets/{bucket}/"
    rules = [r for r in conf["locations"] if r.get("locationPrefix") != prefix]
    if present:
        rules.append({"locationPrefix": prefix, "collection": f"{bucket}-kept"})
    if rules != conf["locations"]:
        conf["locations"] = rules
        _put_conf(filer, conf)
        time.sleep(1.0)  # the filer and the S3 gateway reload filer.conf asynchronously


def _s3(authority: StateAuthority, name: str, call: Any, deadline_s: float = 10.0) -> Any:
    return call_with_retries(authority, name, call, deadline=time.monotonic() + deadline_s)


def _wait_head(authority: StateAuthority, bucket: str, within_s: float, missing: bool) -> float:
    """Seconds until HEAD of ``bucket`` answers NoSuchBucket (``missing``) or answers at all;
    every attempt bounded (2 s), every 0.25 s, ``ActivityFailed`` naming the last answer."""
    started = time.monotonic()
    last = "no answer yet"
    quick = authority.with_overrides(connect_timeout_s=2.0, read_timeout_s=2.0)
    while time.monotonic() - started < within_s:
        try:
            _s3(quick, "head-bucket", lambda c: c.head_bucket(Bucket=bucket), 2.0)
            if not missing:
                return round(time.monotonic() - started, 3)
            last = "it still answered"
        except StateAuthorityError as exc:
            if missing and exc.error_class == "no-such-bucket":
                return round(time.monotonic() - started, 3)
            last = f"{exc.error_class}: {exc}"
        time.sleep(0.25)
    want = "reported missing" if missing else "back"
    raise ActivityFailed(f"bucket {bucket!r} was not {want} within {within_s:g}s: {last}")


def _kept_files(lab: Path, bucket: str, pattern: str = "{bucket}-kept_*.dat") -> list[str]:
    """Volume files of the bucket's kept collection on the lab's nodes (or of ``pattern``)."""
    return sorted(
        str(p.relative_to(lab))
        for p in (lab / "nodes").glob("*/volumes/*/" + pattern.format(bucket=bucket))
        if p.is_file()
    )


# ----------------------------------------------------------------- actions ---


def _write_objects(
    authority: StateAuthority, name: str, backup: str, objects: int, size_bytes: int
) -> list[dict[str, Any]]:
    """Create ``name`` with ``objects`` random objects, each copied to the backup bucket."""
    _s3(authority, "create-bucket", lambda c: c.create_bucket(Bucket=name))
    written = []
    for index in range(objects):
        key = f"{OBJECT_PREFIX}object-{index}"
        body = os.urandom(size_bytes)
        digest = hashlib.sha256(body).hexdigest()

        def put(c: Any, key: str = key, body: bytes = body, digest: str = digest) -> Any:
            return c.put_object(Bucket=name, Key=key, Body=body, Metadata={"sha256": digest})

        _s3(authority, "put", put)

        def copy(c: Any, key: str = key) -> Any:
            return c.copy_object(
                Bucket=backup,
                Key=_backup_prefix(name) + key[len(OBJECT_PREFIX) :],
                CopySource={"Bucket": name, "Key": key},
            )

        _s3(authority, "backup", copy)
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
        plan["kept_on_disk"] = _rustfs_lose(lab, name)
        plan["missing_after_s"] = _wait_head(authority, name, wait_missing_s, missing=True)
        plan["markers_on_disk"] = _rustfs_markers(lab, name)
        if not plan["markers_on_disk"]:
            raise ActivityFailed(
                f"{name} is reported missing but no drive holds {RUSTFS_SYSTEM}/buckets/{name}: "
                "its metadata did not stay on disk, so this is not the incident's shape"
            )
    else:
        _set_rule(filer, name, present=True)
        try:
            plan["objects"] = _write_objects(authority, name, backup, objects, size_bytes)
        finally:
            # the rule must be gone before the entry is deleted, or the delete takes the kept
            # collection (the data) with it
            _set_rule(filer, name, present=False)
        url = f"{filer}/buckets/{name}?recursive=true&skipChunkDeletion=true"
        status, data = _http("DELETE", url)
        if status not in (200, 202, 204):
            raise ActivityFailed(
                f"deleting the filer entry of {name}: HTTP {status} {data[:200]!r}"
            )
        logger.warning("bucket-index-loss: deleted the filer entry of %s, chunks kept", name)
        plan["missing_after_s"] = _wait_head(authority, name, wait_missing_s, missing=True)
        plan["kept_on_disk"] = _kept_files(lab, name)
        plan["markers_on_disk"] = plan["kept_on_disk"]
    plan["took_effect"] = bool(plan["kept_on_disk"])
    if not plan["kept_on_disk"]:
        raise ActivityFailed(
            f"{name} is reported missing but none of its data is on the lab's volumes "
            "(SeaweedFS: <bucket>-kept_*.dat; RustFS: xl.meta under the kept directory): "
            "the data did not stay on disk, so this is not the incident's shape"
        )
    return plan


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
    listing = _s3(
        authority, "list-backup", lambda c: c.list_objects_v2(Bucket=backup, Prefix=prefix)
    )
    keys = [item["Key"] for item in listing.get("Contents", [])]
    if not keys:
        raise ActivityFailed(f"nothing to restore: no object under s3://{backup}/{prefix}")
    repair: Result = {"create_bucket": "created"}
    if server != "rustfs":
        # the restored objects go to the kept collection too, so that the rollback's one
        # delete removes everything this run wrote
        _set_rule(filer, name, present=True)
    try:
        _s3(authority, "create-bucket", lambda c: c.create_bucket(Bucket=name))
    except StateAuthorityError as exc:
        if exc.code in _EXISTS:
            repair["create_bucket"] = str(exc.code)
        elif server == "rustfs" and exc.error_class == "no-such-bucket":
            repair["create_bucket"] = "NoSuchBucket"
            repair["directories"] = _rustfs_repair(lab, name)
            repair["present_after_s"] = _wait_head(authority, name, 20.0, missing=False)
            logger.warning("bucket-index-loss: put %s back on %s", name, repair["directories"])
        else:
            raise
    restored = []
    for source in keys:
        key = OBJECT_PREFIX + source[len(prefix) :]

        def copy(c: Any, key: str = key, source: str = source) -> Any:
            return c.copy_object(Bucket=name, Key=key, CopySource={"Bucket": backup, "Key": source})

        _s3(authority, "restore", copy)
        answer = _s3(authority, "get", lambda c, key=key: c.get_object(Bucket=name, Key=key))
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
        _rustfs_remove(authority, lab, name)
    else:
        _seaweedfs_remove(authority, filer, name)

    def left() -> list[str]:
        if server == "rustfs":
            return _rustfs_left(lab, name)
        # both collections: <bucket>_N and <bucket>-kept_N
        return _kept_files(lab, name) + _kept_files(lab, name, "{bucket}_*.dat")

    removed = _remove_backup_copies(authority, configuration, name)
    deadline = time.monotonic() + 10.0  # servers drop a deleted bucket's files promptly
    while left() and time.monotonic() < deadline:
        time.sleep(0.5)
    return {"bucket": name, "removed_backup_copies": removed, "kept_left_on_disk": left()}


def _rustfs_left(lab: Path, bucket: str) -> list[str]:
    """What of the scratch bucket is still on the drives: its directory, kept data, markers."""
    paths = [*(d / bucket for d in _rustfs_drives(lab)), *_rustfs_kept(lab, bucket)]
    return sorted(str(p.relative_to(lab)) for p in paths if p.exists()) + _rustfs_markers(
        lab, bucket
    )


def _rustfs_remove(authority: StateAuthority, lab: Path, name: str) -> None:
    if _rustfs_repair(lab, name):  # lost: S3 can delete it only once it is back
        _wait_head(authority, name, 20.0, missing=False)
    try:
        _s3(authority, "head-bucket", lambda c: c.head_bucket(Bucket=name))
        present = True
    except StateAuthorityError as exc:
        if exc.error_class != "no-such-bucket":
            raise
        present = False
    if present:
        while True:
            listing = _s3(authority, "list", lambda c: c.list_objects_v2(Bucket=name))
            keys = [item["Key"] for item in listing.get("Contents", [])]
            for key in keys:
                _s3(authority, "delete", lambda c, k=key: c.delete_object(Bucket=name, Key=k))
            if not listing.get("IsTruncated"):
                break
        _s3(authority, "delete-bucket", lambda c: c.delete_bucket(Bucket=name))
    for kept in _rustfs_kept(lab, name):
        if kept.is_dir():  # this run's own moved-aside directory, by its exact name
            shutil.rmtree(kept)


def _seaweedfs_remove(authority: StateAuthority, filer: str, name: str) -> None:
    # Deleting a bucket entry deletes the collection its location rule names. With the rule
    # in place that is the kept collection (the lost chunks and the restored ones); without
    # it, the collection named after the bucket, which SeaweedFS creates with the bucket.
    for with_rule in (True, False):
        _set_rule(filer, name, present=with_rule)
        try:
            try:
                _s3(authority, "create-bucket", lambda c: c.create_bucket(Bucket=name))
            except StateAuthorityError as exc:
                if exc.code not in _EXISTS:
                    raise
            status, data = _http("DELETE", f"{filer}/buckets/{name}?recursive=true")
            if status not in (200, 202, 204, 404):
                raise ActivityFailed(f"deleting {name}: HTTP {status} {data[:200]!r}")
        finally:
            _set_rule(filer, name, present=False)


def _remove_backup_copies(
    authority: StateAuthority, configuration: Configuration, name: str
) -> int:
    backup = _backup_bucket(authority, configuration)
    prefix = _backup_prefix(name)
    listing = _s3(
        authority,
        "list-backup-versions",
        lambda c: c.list_object_versions(Bucket=backup, Prefix=prefix),
    )
    removed = 0
    for item in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
        if item["Key"].startswith(prefix):  # never anything but this run's copies

            def delete(c: Any, key: str = item["Key"], version: str = item["VersionId"]) -> Any:
                return c.delete_object(Bucket=backup, Key=key, VersionId=version)

            _s3(authority, "delete", delete)
            removed += 1
    return removed
