"""The evidence store: a copy of every record and the chain head, somewhere the directory is not.

A hash chain in one directory cannot show that its newest records were
deleted (the rest still chains). The store can: configured with
``FLYWHEEL_EVIDENCE_URL=s3://BUCKET/PREFIX``, every record and journal copy is
uploaded under ``PREFIX/records/`` (an RCA bundle under ``PREFIX/rca/``) and the chain head (record count, newest
record's name and SHA-256, signed when a key is configured) is written to
``PREFIX/HEAD.json`` on every write, with a sequence one above the store's previous head's
and its time, both signed. ``evidence verify`` then compares the directory with the store
and names missing, extra and altered records, and reads the store's history (object
versions and delete markers): a record deleted from the store, or a head whose sequence went
backwards (an older, validly signed ``HEAD.json`` restored), is named. Only someone who can
delete object *versions* permanently can still erase history; keep that right away from the
identities that write evidence.

The store has its own endpoint and credentials (``FLYWHEEL_EVIDENCE_ENDPOINT_URL``,
``FLYWHEEL_EVIDENCE_ACCESS_KEY_ID``, ``FLYWHEEL_EVIDENCE_SECRET_ACCESS_KEY``,
``FLYWHEEL_EVIDENCE_REGION``; each falls back to the ``AWS_*`` variable),
needs bucket versioning (checked), and must not be the state authority's own
state bucket on the same endpoint: evidence about an outage must survive the
outage, so that configuration is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import botocore.config
import botocore.exceptions

from flywheel_chaos import settings
from harness.errors import ConfigError
from harness.record.evidence import canonical, record_files, sha256
from harness.record.signing import Signer, Verifier

logger = logging.getLogger("flywheel_chaos.record.store")

URL_ENV = settings.FLYWHEEL_EVIDENCE_URL.name
HEAD = "HEAD.json"


class StoreError(Exception):
    """The store could not be read or written (unreachable, denied, not versioned)."""


def _setting(env: Mapping[str, str], own: str, fallback: str, default: str = "") -> str:
    return env.get(own) or env.get(fallback) or default


@dataclass
class EvidenceStore:
    """One ``s3://bucket/prefix`` holding records and the chain head."""

    bucket: str
    prefix: str
    endpoint: str
    region: str = "us-east-1"
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    timeout_s: float = 5.0
    _client: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint or None,
                region_name=self.region,
                aws_access_key_id=self.access_key_id,
                aws_secret_access_key=self.secret_access_key,
                config=botocore.config.Config(
                    connect_timeout=min(2.0, self.timeout_s),
                    read_timeout=self.timeout_s,
                    retries={"total_max_attempts": 2, "mode": "standard"},
                    s3={"addressing_style": "path"},
                ),
            )
        return self._client

    def _call(self, what: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, what)(*args, **kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise StoreError(f"{what} on {self.url} failed: {exc}") from exc

    def check_versioning(self) -> None:
        status = self._call("get_bucket_versioning", Bucket=self.bucket).get("Status")
        if status != "Enabled":
            raise StoreError(
                f"bucket versioning on {self.bucket} is {status or 'off'}: the store needs it "
                "(an overwritten head or record must stay recoverable)"
            )

    def ensure_bucket(self) -> list[str]:
        """Create the bucket if it is missing and turn versioning on; what it did (``evidence
        init``: the one call that needs more than the writer's rights)."""
        done: list[str] = []
        existing = {b["Name"] for b in self._call("list_buckets").get("Buckets", [])}
        if self.bucket not in existing:
            self._call("create_bucket", Bucket=self.bucket)
            done.append(f"created bucket {self.bucket}")
        status = self._call("get_bucket_versioning", Bucket=self.bucket).get("Status")
        if status != "Enabled":
            self._call(
                "put_bucket_versioning",
                Bucket=self.bucket,
                VersioningConfiguration={"Status": "Enabled"},
            )
            done.append(f"turned versioning on for {self.bucket}")
        return done

    def put(self, name: str, data: bytes) -> None:
        self._call(
            "put_object",
            Bucket=self.bucket,
            Key=self._key(name),
            Body=data,
            Metadata={"sha256": sha256(data)},
        )

    def get(self, name: str) -> bytes | None:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(name))[
                "Body"
            ].read()
            return body
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise StoreError(f"get_object {name} on {self.url} failed: {exc}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise StoreError(f"get_object {name} on {self.url} failed: {exc}") from exc

    def records(self) -> dict[str, str]:
        """Name -> ETag of every file under ``records/``."""
        return self.listing("records/")

    def listing(self, folder: str) -> dict[str, str]:
        """Name -> ETag of every file under ``folder`` (``records/``, ``rca/``)."""
        found: dict[str, str] = {}
        prefix = self._key(folder)
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list_objects_v2", **kwargs)
            for item in page.get("Contents", []):
                found[item["Key"][len(prefix) :]] = str(item.get("ETag", "")).strip('"')
            if not page.get("IsTruncated"):
                return found
            token = page.get("NextContinuationToken")

    def versions(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every version and delete marker under the store's prefix (its whole history)."""
        versions: list[dict[str, Any]] = []
        markers: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._key("")}
        while True:
            page = self._call("list_object_versions", **kwargs)
            versions += page.get("Versions", [])
            markers += page.get("DeleteMarkers", [])
            if not page.get("IsTruncated"):
                return versions, markers
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")

    def head_versions(self) -> list[dict[str, Any]]:
        """Every version of the chain head the store kept, oldest first, parsed."""
        versions, _ = self.versions()
        # S3 lists a key's versions newest first (LastModified has only a second's grain)
        heads = [v for v in versions if v["Key"] == self._key(HEAD)][::-1]
        parsed = []
        for version in heads:
            try:
                body = self.client.get_object(
                    Bucket=self.bucket, Key=version["Key"], VersionId=version["VersionId"]
                )["Body"].read()
                parsed.append({**json.loads(body), "_version": version["VersionId"]})
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, ValueError):
                parsed.append({"_version": version["VersionId"], "_unreadable": True})
        return parsed

    def highest_sequence(self) -> int:
        return max((int(h.get("sequence") or 0) for h in self.head_versions()), default=0)

    def history_problems(self) -> list[str]:
        """What the store's versions say was undone: deleted records, heads gone back."""
        problems = []
        _, markers = self.versions()
        prefix = self._key("records/")
        for marker in markers:
            if marker["Key"].startswith(prefix) and marker.get("IsLatest"):
                problems.append(
                    f"deleted: {marker['Key'][len(prefix) :]} was deleted from the store "
                    f"(a delete marker of {marker['LastModified']})"
                )
        highest = 0
        for head in self.head_versions():
            sequence = int(head.get("sequence") or 0)
            if sequence and sequence < highest:
                problems.append(
                    f"head rolled back: head version {head['_version']} has sequence "
                    f"{sequence}, after one with {highest}"
                )
            highest = max(highest, sequence)
        current = self.head() or {}
        if highest and int(current.get("sequence") or 0) < highest:
            problems.append(
                f"head rolled back: the current head's sequence is {current.get('sequence')}, "
                f"the store once had {highest}"
            )
        return problems

    def head(self) -> dict[str, Any] | None:
        data = self.get(HEAD)
        if data is None:
            return None
        try:
            loaded: dict[str, Any] = json.loads(data)
            return loaded
        except ValueError as exc:
            raise StoreError(f"{self.url}/{HEAD} is not JSON") from exc


def load_store(environ: Mapping[str, str] | None = None) -> EvidenceStore | None:
    """The configured store (None without ``FLYWHEEL_EVIDENCE_URL``); refuses the state bucket."""
    env = os.environ if environ is None else environ
    url = env.get(URL_ENV, "")
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigError(
            f"{URL_ENV}={url!r} is not s3://BUCKET/PREFIX", "for example s3://tofu-evidence/lab"
        )
    endpoint = _setting(env, settings.FLYWHEEL_EVIDENCE_ENDPOINT_URL.name, "AWS_ENDPOINT_URL_S3")
    state_bucket = settings.TOFU_STATE_BUCKET.get(env)
    state_endpoint = env.get("AWS_ENDPOINT_URL_S3", "")
    if parsed.netloc == state_bucket and endpoint.rstrip("/") == state_endpoint.rstrip("/"):
        raise ConfigError(
            f"the evidence store {url} is the state bucket itself",
            "evidence about an outage must survive the outage: use another bucket "
            "(better: another server, FLYWHEEL_EVIDENCE_ENDPOINT_URL)",
        )
    return EvidenceStore(
        bucket=parsed.netloc,
        prefix=parsed.path.strip("/"),
        endpoint=endpoint,
        region=_setting(env, settings.FLYWHEEL_EVIDENCE_REGION.name, "AWS_REGION", "us-east-1"),
        access_key_id=_setting(
            env, settings.FLYWHEEL_EVIDENCE_ACCESS_KEY_ID.name, "AWS_ACCESS_KEY_ID"
        )
        or None,
        secret_access_key=_setting(
            env, settings.FLYWHEEL_EVIDENCE_SECRET_ACCESS_KEY.name, "AWS_SECRET_ACCESS_KEY"
        )
        or None,
    )


def chain_head(
    directory: Path, signer: Signer | None = None, sequence: int | None = None
) -> dict[str, Any]:
    """Count and newest record of the local chain, signed when a key is configured.

    A published head also carries its ``sequence`` (one more than the store's previous
    head's: a head restored from an older version reads lower) and ``published_at``; both
    are signed."""
    files = record_files(directory)
    newest = files[-1] if files else None
    digest = sha256(newest.read_bytes()) if newest else None
    head: dict[str, Any] = {
        "count": len(files),
        "newest": newest.name if newest else None,
        "newest_sha256": digest,
    }
    if sequence is not None:
        head["sequence"] = sequence
        head["published_at"] = dt.datetime.now(dt.UTC).isoformat()
    if signer is not None:
        head["signature"] = signer.sign(head_message(head))
    return head


def head_message(head: Mapping[str, Any]) -> str:
    message = f"{head.get('count')}:{head.get('newest')}:{head.get('newest_sha256')}"
    if "sequence" in head:
        message += f":{head.get('sequence')}:{head.get('published_at')}"
    return message


def _local_files(directory: Path) -> list[Path]:
    files: list[Path] = []
    for record in record_files(directory):
        files.append(record)
        journal = directory / record.name.replace(".json", ".journal.json")
        if journal.exists():
            files.append(journal)
    return files


def _bundles(directory: Path) -> list[Path]:
    """The RCA bundles the records name (``rca/...tar.gz`` beside them)."""
    found = []
    for record in record_files(directory):
        try:
            bundle = json.loads(record.read_bytes()).get("rca")
        except ValueError:
            continue
        if isinstance(bundle, dict) and bundle.get("file"):
            path = directory / str(bundle["file"])
            if path.parent.name == "rca" and path.exists():
                found.append(path)
    return found


def publish(directory: Path, store: EvidenceStore, signer: Signer | None = None) -> dict[str, Any]:
    """Upload every local record, journal and RCA bundle the store lacks, then the chain head."""
    store.check_versioning()
    present = store.records()
    uploaded = []
    for path in _local_files(directory):
        if path.name not in present:
            store.put(f"records/{path.name}", path.read_bytes())
            uploaded.append(path.name)
    bundles = store.listing("rca/")
    for path in _bundles(directory):
        if path.name not in bundles:
            store.put(f"rca/{path.name}", path.read_bytes())
            uploaded.append(f"rca/{path.name}")
    previous = store.head() or {}
    sequence = max(int(previous.get("sequence") or 0), store.highest_sequence()) + 1
    head = chain_head(directory, signer, sequence)
    store.put(HEAD, canonical(head))
    return {"store": store.url, "uploaded": uploaded, "head": head}


def pull(directory: Path, store: EvidenceStore) -> list[str]:
    """Download every record, journal and RCA bundle the directory lacks; their names."""
    directory.mkdir(parents=True, exist_ok=True)
    fetched = []
    wanted = [(f"records/{n}", directory / n) for n in sorted(store.records())]
    wanted += [(f"rca/{n}", directory / "rca" / n) for n in sorted(store.listing("rca/"))]
    for key, target in wanted:
        if target.exists():
            continue
        data = store.get(key)
        if data is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            fetched.append(key.removeprefix("records/"))
    return fetched


def compare(directory: Path, store: EvidenceStore, verifier: Verifier | None = None) -> list[str]:
    """What differs between the directory and the store: missing, extra, altered, head."""
    store.check_versioning()
    problems: list[str] = []
    remote = store.records()
    local = {p.name: p for p in _local_files(directory)}
    for name in sorted(set(remote) - set(local)):
        problems.append(f"missing: {name} is in the store but not in {directory}")
    for name in sorted(set(local) - set(remote)):
        problems.append(f"extra: {name} is not in the store (unpublished: evidence push)")
    for name in sorted(set(local) & set(remote)):
        data = local[name].read_bytes()
        etag = remote[name]
        if len(etag) == 32 and "-" not in etag:
            same = hashlib.md5(data, usedforsecurity=False).hexdigest() == etag
        else:
            same = store.get(f"records/{name}") == data
        if not same:
            problems.append(f"altered: {name} differs from the store's copy")
    problems += store.history_problems()
    head = store.head()
    if head is None:
        problems.append(f"the store {store.url} has no chain head")
    else:
        mine = chain_head(directory)
        for key in ("count", "newest", "newest_sha256"):
            if head.get(key) != mine.get(key):
                problems.append(
                    f"head: the store's {key} is {head.get(key)}, the directory's {mine.get(key)}"
                )
        if verifier is not None:
            wrong = verifier.problem(head_message(head), head.get("signature"))
            if wrong:
                problems.append(f"head signature: {wrong}")
    return problems
