"""Volumes as directories: node-local PVs under the node, the rest in the pod's directory.

A ``hostPath`` that names a CSI volume's publish directory of a pod on this
node (``<kubelet root>/pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount``, what
the RCA's read-only debug pod reads a volume in use through) is
that volume's node directory, as on a real node while the pod runs; a publish
directory of a pod not running here does not exist, and the pod waits, as a
kubelet's ``hostPath`` of type ``Directory`` does. Other host paths are a
directory of the pod's own. Projected volumes (the service account token, the cluster CA,
the namespace) are filled by :mod:`.projected`.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from kubernetes import client

from harness.lab.nodeagent.kube import API_TIMEOUT
from harness.lab.nodeagent.projected import fill
from harness.lab.nodeagent.runtime import PodRunner
from harness.processes import write_private

CSI_PUBLISH = re.compile(
    r".*/pods/(?P<uid>[0-9a-f-]+)/volumes/kubernetes\.io~csi/(?P<pv>[^/]+)/mount/?"
)


def materialise(
    core: client.CoreV1Api,
    pod: Any,
    runner: PodRunner,
    node_dir: Path,
    local_uids: set[str] | None = None,
) -> dict[str, Path] | None:
    """Host directory of each volume; None while one is not available yet.

    ``local_uids``: the pods running on this node (whose CSI publish
    directories exist here).
    """
    paths: dict[str, Path] = {}
    for volume in pod.spec.volumes or []:
        target = runner.directory / "volumes" / volume.name
        publish = CSI_PUBLISH.fullmatch(volume.host_path.path) if volume.host_path else None
        if publish is not None:
            if publish["uid"] not in (local_uids or set()):
                return None
            paths[volume.name] = node_dir / "volumes" / publish["pv"]
            continue
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
        elif volume.projected is not None:
            tokens = fill(core, pod, volume, target)
            if tokens is None:
                return None
            runner.tokens += tokens
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
