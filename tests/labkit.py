"""Helpers for tests that use the lab (pure plumbing, no assertions)."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import botocore.config

from harness.lab.build import build
from harness.lab.cluster import Lab
from harness.lab.paths import LabPaths

REPO = Path(__file__).resolve().parent.parent


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            values[name] = shlex.split(value)[0] if value else ""
    return values


@contextmanager
def running_lab(name: str) -> Iterator[Lab]:
    """A lab in REPO/<name> (not under /tmp: pods get a private /tmp), stopped and removed after."""
    build()
    root = REPO / name
    shutil.rmtree(root, ignore_errors=True)
    lab = Lab(LabPaths(root))
    lab.up(lambda message: None)
    try:
        yield lab
    finally:
        lab.down(lambda message: None)
        shutil.rmtree(root, ignore_errors=True)


def s3_client(env: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=botocore.config.Config(
            connect_timeout=1, read_timeout=3, retries={"total_max_attempts": 1}
        ),
    )


def serving(env: dict[str, str]) -> bool:
    try:
        s3_client(env).head_object(Bucket=env["TOFU_STATE_BUCKET"], Key=env["TOFU_STATE_KEY"])
        return True
    except Exception:
        return False
