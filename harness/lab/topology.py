"""Topologies: which manifests a lab applies, whether they need RustFS, and applying them.

A topology is a directory of Kubernetes manifests under ``lab/topologies``: ``nodes.yaml``
(the nodes the agents register), ``00-*`` CRDs, ``20-*`` the workloads that read the S3
credentials Secret (written first, never to disk beyond a 0600 file removed at once).
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import yaml

from harness.lab.build import REPO
from harness.lab.paths import NODES, LabPaths, service_address
from harness.lab.seaweed import s3_identity_config
from harness.lab.variants import apply_variant, load_variant, split
from harness.processes import wait_until, write_private

TOPOLOGIES: Final = REPO / "lab" / "topologies"
TOPOLOGY_ALIASES: Final = {"ha": "ha-seaweedfs"}
"""Old names that still work for one release: ``ha`` is ``ha-seaweedfs`` now."""
STATE_NAMESPACE: Final = "nix-cache"
STATE_SERVICE: Final = "attic-rustfs-openebs"
CREDENTIALS_SECRET: Final = "attic-rustfs-credentials"

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
Progress = Callable[[str], None]


def canonical(topology: str) -> str:
    """The topology's own name (aliases resolved), its ``:variant`` kept."""
    base, variant = split(topology)
    base = TOPOLOGY_ALIASES.get(base, base)
    return f"{base}:{variant}" if variant else base


def known() -> list[str]:
    return sorted(d.name for d in TOPOLOGIES.iterdir() if d.is_dir())


def directory(topology: str) -> Path:
    return TOPOLOGIES / split(canonical(topology))[0]


def _manifest(path: Path, topology: str, paths: LabPaths) -> Path:
    """``path`` itself, or, for a variant, its documents with the variant applied (a copy in
    the lab directory: the topology's manifests are never copied into the repository)."""
    variant = split(topology)[1]
    if not variant:
        return path
    documents = list(yaml.safe_load_all(path.read_text()))
    applied, changed = apply_variant(documents, load_variant(directory(topology), variant))
    if not changed:
        return path
    target = paths.root / "variant" / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump_all(applied))
    return target


def _commands(document: Any) -> list[str]:
    """First words of every container command in a manifest (any workload kind)."""
    if isinstance(document, dict):
        found = []
        if isinstance(document.get("command"), list) and document["command"]:
            found.append(str(document["command"][0]))
        for value in document.values():
            found += _commands(value)
        return found
    if isinstance(document, list):
        return [c for item in document for c in _commands(item)]
    return []


def needs_rustfs(topology: str) -> bool:
    """Whether a topology runs RustFS (a container whose command is ``rustfs``)."""
    return any(
        Path(command).name == "rustfs"
        for path in directory(topology).glob("*.yaml")
        for document in yaml.safe_load_all(path.read_text())
        for command in _commands(document)
    )


def apply(
    kubectl: Kubectl, paths: LabPaths, topology: str, creds: dict[str, str], progress: Progress
) -> str:
    """Apply the topology, wait for the nodes and the state authority's rollout; its endpoint."""
    files = sorted(f for f in directory(topology).glob("*.yaml") if f.name != "nodes.yaml")
    crds = [f for f in files if f.name.startswith("00-")]
    for path in crds:
        kubectl("apply", "--server-side", "--field-manager=flywheel-lab", "-f", str(path))
    if crds:
        kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all", timeout_s=70
        )
    wait_until(
        lambda: (
            kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode
            == 0
        ),
        60,
        "the controller manager to create the default ServiceAccount",
    )
    if split(topology)[1]:
        load_variant(directory(topology), split(topology)[1])  # refuses an unknown one first
    for path in (f for f in files if f not in crds):
        if path.name.startswith("20-"):
            ensure_secret(kubectl, paths, creds)
        manifest = _manifest(path, topology, paths)
        kubectl("apply", "--server-side", "--field-manager=flywheel-lab", "-f", str(manifest))
    progress(f"topology {canonical(topology)} applied")
    kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=60s", timeout_s=70)
    progress("nodes Ready: " + ", ".join(NODES))
    cluster_ip = kubectl(
        "get", "service", STATE_SERVICE, "-n", STATE_NAMESPACE, "-o", "jsonpath={.spec.clusterIP}"
    ).stdout.strip()
    deployment = f"deployment/{STATE_SERVICE}"
    if kubectl("get", deployment, "-n", STATE_NAMESPACE, check=False).returncode == 0:
        kubectl(
            "rollout", "status", deployment, "-n", STATE_NAMESPACE, "--timeout=120s", timeout_s=130
        )
    # otherwise (StatefulSets: ha-rustfs) the seed waits until S3 serves
    return f"http://{service_address(cluster_ip)}:9000"


def ensure_secret(kubectl: Kubectl, paths: LabPaths, creds: dict[str, str]) -> None:
    """The S3 servers' credentials Secret (SeaweedFS's identity file, RustFS's keys)."""
    document = s3_identity_config(creds["access_key"], creds["secret_key"])

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CREDENTIALS_SECRET, "namespace": STATE_NAMESPACE},
        "type": "Opaque",
        "data": {
            "s3.json": b64(json.dumps(document)),
            "access-key": b64(creds["access_key"]),
            "secret-key": b64(creds["secret_key"]),
        },
    }
    manifest = paths.root / "secret.yaml"
    write_private(manifest, yaml.safe_dump(secret))
    try:
        kubectl("apply", "--server-side", "--field-manager=flywheel-lab", "-f", str(manifest))
    finally:
        manifest.unlink()
