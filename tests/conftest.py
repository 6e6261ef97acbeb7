"""Shared fixtures: one real SeaweedFS S3 server per session, a fresh bucket per test."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest

from harness.lab.rustfs import RustFSNotFound, RustFSServer, rustfs_binary
from harness.lab.seaweed import SeaweedS3

STATE_KEY = "env/test/terraform.tfstate"
STATE_BODY = b'{"version": 4, "terraform_version": "1.12.2", "serial": 7, "lineage": "test", "outputs": {}, "resources": []}\n'


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real S3 server on loopback with enforced credentials and no telemetry."""
    server = SeaweedS3(
        data_dir=tmp_path_factory.mktemp("seaweed"),
        access_key="AKFLY" + secrets.token_hex(6).upper(),
        secret_key=secrets.token_urlsafe(24),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rustfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RustFSServer]:
    """A real RustFS 1.0.1 on loopback (built by lab build --rustfs)."""
    try:
        rustfs_binary()
    except RustFSNotFound as exc:
        pytest.skip(str(exc))
    server = RustFSServer(
        data_dir=tmp_path_factory.mktemp("rustfs"),
        access_key="AKRFS" + secrets.token_hex(6).upper(),
        secret_key=secrets.token_urlsafe(24),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def admin_client(server: SeaweedS3 | RustFSServer) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=botocore.config.Config(
            connect_timeout=2, read_timeout=10, retries={"total_max_attempts": 2}
        ),
    )


@pytest.fixture(scope="session")
def s3_admin(seaweed: SeaweedS3) -> Any:
    return admin_client(seaweed)


def empty_and_delete_bucket(client: Any, bucket: str) -> None:
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            client.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)


def make_bucket(client: Any, versioned: bool = True) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    if versioned:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    client.put_object(Bucket=name, Key=STATE_KEY, Body=STATE_BODY)
    return name


@pytest.fixture
def state_bucket(s3_admin: Any) -> Iterator[str]:
    """A versioned bucket holding a seeded state key; removed after the test."""
    name = make_bucket(s3_admin)
    yield name
    empty_and_delete_bucket(s3_admin, name)


@pytest.fixture
def unversioned_bucket(s3_admin: Any) -> Iterator[str]:
    name = make_bucket(s3_admin, versioned=False)
    yield name
    empty_and_delete_bucket(s3_admin, name)


@pytest.fixture
def authority_env(
    seaweed: SeaweedS3, state_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The DESIGN.md environment contract pointing at the test server and bucket."""
    env = {
        "AWS_ENDPOINT_URL_S3": seaweed.endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
        "TOFU_STATE_BUCKET": state_bucket,
        "TOFU_STATE_KEY": STATE_KEY,
    }
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def subprocess_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TOFU_"))}
    env.update(extra)
    return env


REPO = Path(__file__).resolve().parent.parent
