"""Topologies: which manifests a lab applies, whether they need RustFS, and applying them.

A topology is a directory of Kubernetes manifests under ``lab/topologies``: ``nodes.yaml``
(the nodes the agents register), ``00-*`` CRDs, ``20-*`` the workloads that read the S3
credentials Secret (written first, never to disk beyond a 0600 file removed at once).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import yaml

from harness import assets
from harness.errors import HarnessError
from harness.lab.incluster import apply_secret, ensure_secrets
from harness.lab.paths import NODES, LabPaths, service_address
from harness.lab.seaweed import s3_identity_config
from harness.lab.variants import apply_variant, load_variant, split
from harness.processes import wait_until

TOPOLOGIES: Final = assets.topologies()
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
    ensure_secrets(kubectl, paths, creds)  # what deploy/overlays/lab's game day names
    progress(f"topology {canonical(topology)} applied")
    kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=60s", timeout_s=70)
    progress("nodes Ready: " + ", ".join(NODES))
    cluster_ip = kubectl(
        "get", "service", STATE_SERVICE, "-n", STATE_NAMESPACE, "-o", "jsonpath={.spec.clusterIP}"
    ).stdout.strip()
    deployment = f"deployment/{STATE_SERVICE}"
    if kubectl("get", deployment, "-n", STATE_NAMESPACE, check=False).returncode == 0:
        wait_ready_pods(kubectl, paths, progress)
    # otherwise (StatefulSets: ha-rustfs) the seed waits until S3 serves
    return f"http://{service_address(cluster_ip)}:9000"


STALL_S: Final = 120.0
"""How long the state namespace's pods may make no progress at all before ``up`` gives up."""
BOUND_S: Final = 420.0
"""The longest ``up`` waits for them while they do make progress (a loaded machine)."""


def _pod_states(kubectl: Kubectl) -> dict[str, str]:
    result = kubectl("get", "pods", "-n", STATE_NAMESPACE, "-o", "json", check=False, timeout_s=30)
    if result.returncode != 0:
        return {}
    states = {}
    for pod in json.loads(result.stdout).get("items", []):
        conditions = {
            c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []
        }
        restarts = sum(
            c.get("restartCount", 0)
            for c in (pod.get("status") or {}).get("containerStatuses") or []
        )
        states[pod["metadata"]["name"]] = (
            f"{(pod.get('status') or {}).get('phase')} ready={conditions.get('Ready', 'False')} restarts={restarts}"
        )
    return states


def wait_ready_pods(kubectl: Kubectl, paths: LabPaths, progress: Progress) -> None:
    """Wait until every pod of the state namespace is Ready: as long as they make progress
    (a pod becomes Ready, starts, restarts) up to :data:`BOUND_S`, but no more than
    :data:`STALL_S` without any. A loaded 2-core machine starts twelve ha pods slowly;
    a fixed deadline read that as a failure. On failure the error names each pod that is
    not Ready, with the tail of its log."""
    started = last_change = time.monotonic()
    seen: dict[str, str] = {}
    while True:
        states = _pod_states(kubectl)
        if states and all("ready=True" in s for s in states.values()):
            progress(f"{len(states)} pod(s) Ready in {time.monotonic() - started:.1f}s")
            return
        if states != seen:
            seen, last_change = states, time.monotonic()
        now = time.monotonic()
        if now - last_change > STALL_S or now - started > BOUND_S:
            waiting = {n: s for n, s in states.items() if "ready=True" not in s}
            why = "no progress for" if now - last_change > STALL_S else "still not Ready after"
            seconds = STALL_S if why == "no progress for" else BOUND_S
            raise HarnessError(
                f"the state authority's pods were not Ready: {why} {seconds:.0f}s: "
                + "; ".join(f"{n} {s}" for n, s in sorted(waiting.items())),
                f"their logs are under {paths.root / 'nodes'}",
                details=_log_tails(paths, list(waiting)),
            )
        time.sleep(1.0)


def _log_tails(paths: LabPaths, pods: list[str]) -> str:
    lines = []
    for pod_file in sorted(paths.root.glob("nodes/*/pods/*/pod")):
        name = pod_file.read_text().split()[0].split("/", 1)[-1]
        if name in pods:
            for log in sorted(pod_file.parent.glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-5:]
                lines += [f"--- {name} {log.stem}", *tail]
    return "\n".join(lines)[-4000:]


def ensure_secret(kubectl: Kubectl, paths: LabPaths, creds: dict[str, str]) -> None:
    """The S3 servers' credentials Secret (SeaweedFS's identity file, RustFS's keys)."""
    document = s3_identity_config(creds["access_key"], creds["secret_key"])
    apply_secret(
        kubectl,
        paths,
        CREDENTIALS_SECRET,
        STATE_NAMESPACE,
        {
            "s3.json": json.dumps(document).encode(),
            "access-key": creds["access_key"].encode(),
            "secret-key": creds["secret_key"].encode(),
        },
    )
