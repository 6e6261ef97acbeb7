"""S3 helpers of the tests: an admin client, fresh buckets, the seeded state key."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import boto3
import botocore.config

from harness.lab.rustfs import RustFSServer
from harness.lab.seaweed import SeaweedS3

STATE_KEY = "env/test/terraform.tfstate"
STATE_BODY = b'{"version": 4, "terraform_version": "1.12.2", "serial": 7, "lineage": "test", "outputs": {}, "resources": []}\n'


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


def subprocess_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TOFU_"))}
    env.update(extra)
    return env


REPO = Path(__file__).resolve().parents[2]


GUARD_CHECK_NAMES = [
    "list-buckets",
    "head-bucket",
    "state-key-head",
    "canary-write-read-delete",
    "versioning-enabled",
    "lock-exclusive",
]
"""The guard's checks, in the order it reports them (what users' scripts read)."""
