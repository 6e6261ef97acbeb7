"""Helpers for tests that use the lab (pure plumbing, no assertions)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import botocore.config
from kubernetes import client, config

from harness.lab.build import build
from harness.lab.cluster import Lab
from harness.lab.paths import LabPaths
from harness.processes import wait_until

REPO = Path(__file__).resolve().parent.parent


def env_file(path: Path) -> dict[str, str]:
    """The lab's environment as ``source .lab/env`` would set it."""
    return Lab(LabPaths(path.parent)).env_values()


@contextmanager
def disruption_budget(lab: Lab, namespace: str, app: str, min_available: int = 1) -> Iterator[str]:
    """A PodDisruptionBudget counted by the disruption controller; removed afterwards."""
    policy = client.PolicyV1Api(
        config.new_client_from_config(config_file=str(lab.paths.kubeconfig))
    )
    name = f"pdb-{uuid.uuid4().hex[:6]}"
    policy.create_namespaced_pod_disruption_budget(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "minAvailable": min_available,
                "selector": {"matchLabels": {"app.kubernetes.io/name": app}},
            },
        },
    )
    try:
        wait_until(
            lambda: (
                (
                    policy.read_namespaced_pod_disruption_budget(
                        name, namespace
                    ).status.current_healthy
                    or 0
                )
                >= min_available
            ),
            30,
            "the disruption controller to count the healthy pod",
        )
        yield name
    finally:
        policy.delete_namespaced_pod_disruption_budget(name, namespace)


@contextmanager
def running_lab(name: str, topology: str = "interim") -> Iterator[Lab]:
    """A fresh lab in REPO/<name> with ``topology``, stopped and removed after."""
    build()
    root = REPO / name
    shutil.rmtree(root, ignore_errors=True)
    lab = Lab(LabPaths(root), topology=topology)
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


def object_bytes(env: dict[str, str], key: str) -> bytes | None:
    """The bytes of a canary object, or None while the server cannot return them."""
    try:
        body: bytes = (
            s3_client(env).get_object(Bucket=env["TOFU_STATE_BUCKET"], Key=key)["Body"].read()
        )
        return body
    except Exception:
        return None


def serving(env: dict[str, str]) -> bool:
    try:
        s3_client(env).head_object(Bucket=env["TOFU_STATE_BUCKET"], Key=env["TOFU_STATE_KEY"])
        return True
    except Exception:
        return False
