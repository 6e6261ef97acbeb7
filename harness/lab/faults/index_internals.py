"""The servers' internals the bucket-index-loss fault reaches into (lab only).

RustFS keeps a bucket as a directory on each drive beside its metadata under
``.rustfs.sys/buckets/<bucket>``; SeaweedFS keeps it as a filer entry whose objects live in a
collection a ``filer.conf`` location rule can name. A production server must never be exposed
to this: only the lab's node volume directories and its filer's loopback address are used.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Final

from chaoslib.exceptions import ActivityFailed

from flywheel_chaos.s3.authority import StateAuthority
from flywheel_chaos.s3.client import call_with_retries
from flywheel_chaos.s3.errors import StateAuthorityError

logger = logging.getLogger("flywheel_chaos.lab.faults")

FILER_CONF: Final = "/etc/seaweedfs/filer.conf"
HTTP_TIMEOUT_S: Final = 5.0
EXISTS: Final = ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")
RUSTFS_SYSTEM: Final = ".rustfs.sys"
RUSTFS_KEPT: Final = ".flywheel-chaos-kept-{bucket}"
"""Where a RustFS drive keeps the scratch bucket's directory while its index is lost: on the
same volume, under a name no bucket can have (bucket names never start with a dot)."""


# ------------------------------------------------------------------ RustFS ---


def rustfs_drives(lab: Path) -> list[Path]:
    """The lab's RustFS drives: its nodes' volume directories that hold ``.rustfs.sys``."""
    return sorted(p.parent for p in (lab / "nodes").glob(f"*/volumes/*/{RUSTFS_SYSTEM}"))


def kept_dir(drive: Path, bucket: str) -> Path:
    return drive / RUSTFS_KEPT.format(bucket=bucket)


def rustfs_kept(lab: Path, bucket: str) -> list[Path]:
    return [kept_dir(d, bucket) for d in rustfs_drives(lab)]


def rustfs_markers(lab: Path, bucket: str) -> list[str]:
    """The bucket's metadata directories on the drives (``.rustfs.sys/buckets/<bucket>``)."""
    return [
        str(d.relative_to(lab) / RUSTFS_SYSTEM / "buckets" / bucket)
        for d in rustfs_drives(lab)
        if (d / RUSTFS_SYSTEM / "buckets" / bucket).is_dir()
    ]


def rustfs_lose(lab: Path, bucket: str) -> list[str]:
    """Move the bucket's directory aside on every drive; the kept files, relative to ``lab``."""
    moved = []
    for drive in rustfs_drives(lab):
        if (drive / bucket).is_dir():
            os.rename(drive / bucket, kept_dir(drive, bucket))
            moved.append(drive)
    if not moved:
        raise ActivityFailed(
            f"no RustFS drive of the lab holds a directory for {bucket}: nothing to lose"
        )
    logger.warning("bucket-index-loss: moved %s aside on %d drives", bucket, len(moved))
    return sorted(
        str(p.relative_to(lab)) for drive in moved for p in kept_dir(drive, bucket).rglob("xl.meta")
    )


def rustfs_repair(lab: Path, bucket: str) -> list[str]:
    """Put the bucket's (empty) directory back on each drive whose metadata still names it."""
    repaired = []
    for drive in rustfs_drives(lab):
        lost = not (drive / bucket).exists()
        named = (drive / RUSTFS_SYSTEM / "buckets" / bucket).is_dir()
        if lost and (named or kept_dir(drive, bucket).is_dir()):
            (drive / bucket).mkdir()
            repaired.append(str((drive / bucket).relative_to(lab)))
    return repaired


# ------------------------------------------------------------------ filer ---


def filer_http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def filer_conf(filer: str) -> dict[str, Any]:
    status, data = filer_http("GET", filer + FILER_CONF)
    if status == 404 or not data.strip():
        return {"version": 0, "locations": []}
    if status != 200:
        raise ActivityFailed(f"reading {FILER_CONF} from the filer: HTTP {status}")
    loaded: dict[str, Any] = json.loads(data)
    loaded.setdefault("locations", [])
    return loaded


def put_filer_conf(filer: str, conf: dict[str, Any]) -> None:
    status, data = filer_http("PUT", filer + FILER_CONF, json.dumps(conf).encode())
    if status not in (200, 201, 204):
        raise ActivityFailed(f"writing {FILER_CONF} to the filer: HTTP {status} {data[:200]!r}")


def set_rule(filer: str, bucket: str, present: bool) -> None:
    """Add (or remove) the location rule that puts ``bucket``'s objects in ``<bucket>-kept``."""
    conf = filer_conf(filer)
    prefix = f"/buckets/{bucket}/"
    rules = [r for r in conf["locations"] if r.get("locationPrefix") != prefix]
    if present:
        rules.append({"locationPrefix": prefix, "collection": f"{bucket}-kept"})
    if rules != conf["locations"]:
        conf["locations"] = rules
        put_filer_conf(filer, conf)
        time.sleep(1.0)  # the filer and the S3 gateway reload filer.conf asynchronously


def s3_call(authority: StateAuthority, name: str, call: Any, deadline_s: float = 10.0) -> Any:
    return call_with_retries(authority, name, call, deadline=time.monotonic() + deadline_s)


def wait_head(authority: StateAuthority, bucket: str, within_s: float, missing: bool) -> float:
    """Seconds until HEAD of ``bucket`` answers NoSuchBucket (``missing``) or answers at all;
    every attempt bounded (2 s), every 0.25 s, ``ActivityFailed`` naming the last answer."""
    started = time.monotonic()
    last = "no answer yet"
    quick = authority.with_overrides(connect_timeout_s=2.0, read_timeout_s=2.0)
    while time.monotonic() - started < within_s:
        try:
            s3_call(quick, "head-bucket", lambda c: c.head_bucket(Bucket=bucket), 2.0)
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


def kept_files(lab: Path, bucket: str, pattern: str = "{bucket}-kept_*.dat") -> list[str]:
    """Volume files of the bucket's kept collection on the lab's nodes (or of ``pattern``)."""
    return sorted(
        str(p.relative_to(lab))
        for p in (lab / "nodes").glob("*/volumes/*/" + pattern.format(bucket=bucket))
        if p.is_file()
    )


def rustfs_left(lab: Path, bucket: str) -> list[str]:
    """What of the scratch bucket is still on the drives: its directory, kept data, markers."""
    paths = [*(d / bucket for d in rustfs_drives(lab)), *rustfs_kept(lab, bucket)]
    return sorted(str(p.relative_to(lab)) for p in paths if p.exists()) + rustfs_markers(
        lab, bucket
    )


def rustfs_remove(authority: StateAuthority, lab: Path, name: str) -> None:
    if rustfs_repair(lab, name):  # lost: S3 can delete it only once it is back
        wait_head(authority, name, 20.0, missing=False)
    try:
        s3_call(authority, "head-bucket", lambda c: c.head_bucket(Bucket=name))
        present = True
    except StateAuthorityError as exc:
        if exc.error_class != "no-such-bucket":
            raise
        present = False
    if present:
        while True:
            listing = s3_call(authority, "list", lambda c: c.list_objects_v2(Bucket=name))
            keys = [item["Key"] for item in listing.get("Contents", [])]
            for key in keys:
                s3_call(authority, "delete", lambda c, k=key: c.delete_object(Bucket=name, Key=k))
            if not listing.get("IsTruncated"):
                break
        s3_call(authority, "delete-bucket", lambda c: c.delete_bucket(Bucket=name))
    for kept in rustfs_kept(lab, name):
        if kept.is_dir():  # this run's own moved-aside directory, by its exact name
            shutil.rmtree(kept)


def seaweedfs_remove(authority: StateAuthority, filer: str, name: str) -> None:
    # Deleting a bucket entry deletes the collection its location rule names. With the rule
    # in place that is the kept collection (the lost chunks and the restored ones); without
    # it, the collection named after the bucket, which SeaweedFS creates with the bucket.
    for with_rule in (True, False):
        set_rule(filer, name, present=with_rule)
        try:
            try:
                s3_call(authority, "create-bucket", lambda c: c.create_bucket(Bucket=name))
            except StateAuthorityError as exc:
                if exc.code not in EXISTS:
                    raise
            status, data = filer_http("DELETE", f"{filer}/buckets/{name}?recursive=true")
            if status not in (200, 202, 204, 404):
                raise ActivityFailed(f"deleting {name}: HTTP {status} {data[:200]!r}")
        finally:
            set_rule(filer, name, present=False)
