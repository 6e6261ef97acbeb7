"""Volumes as directories: node-local PVs under the node, the rest in the pod's directory."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from kubernetes import client

from harness.lab.nodeagent.kube import API_TIMEOUT
from harness.lab.nodeagent.runtime import PodRunner
from harness.processes import write_private


def materialise(
    core: client.CoreV1Api, pod: Any, runner: PodRunner, node_dir: Path
) -> dict[str, Path] | None:
    """Host directory of each volume; None while one is not available yet."""
    paths: dict[str, Path] = {}
    for volume in pod.spec.volumes or []:
        target = runner.directory / "volumes" / volume.name
        if volume.persistent_volume_claim is not None:
            claim = core.read_namespaced_persistent_volume_claim(
                volume.persistent_volume_claim.claim_name,
                runner.namespace,
                _request_timeout=API_TIMEOUT,
            )
            if not claim.spec.volume_name or (claim.status and claim.status.phase != "Bound"):
                return None
            target = node_dir / "volumes" / claim.spec.volume_name
        elif volume.secret is not None:
            secret = core.read_namespaced_secret(
                volume.secret.secret_name, runner.namespace, _request_timeout=API_TIMEOUT
            )
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o700)
            for key, value in (secret.data or {}).items():
                write_private(target / key, base64.b64decode(value))
        elif volume.config_map is not None:
            cm = core.read_namespaced_config_map(
                volume.config_map.name, runner.namespace, _request_timeout=API_TIMEOUT
            )
            target.mkdir(parents=True, exist_ok=True)
            for key, value in (cm.data or {}).items():
                (target / key).write_text(value)
        target.mkdir(parents=True, exist_ok=True)
        paths[volume.name] = target
    return paths
