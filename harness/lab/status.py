"""What ``lab status`` reports: components (running, frozen, powered), nodes, endpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flywheel_chaos import power
from flywheel_chaos.kube.nodes import ready_condition
from harness.lab.build import BINARIES
from harness.lab.components import Component
from harness.lab.kubectl import run_kubectl
from harness.lab.paths import ETCD_VERSION, HOST, KUBERNETES_VERSION, LabPaths, Ports
from harness.lab.plane import frozen
from harness.processes import pid_alive


def components(
    state: dict[str, Any], paths: LabPaths, checks: list[Component]
) -> list[dict[str, Any]]:
    health = {c.name: c.healthy for c in checks}
    found = []
    for component in state.get("components", []):
        pid, name = int(component["pid"]), str(component["name"])
        running, is_frozen = pid_alive(pid), frozen(pid)
        state_of_power = ""
        if name.startswith("node-agent-"):
            state_of_power = str(
                power.read_state(paths.root, name.removeprefix("node-agent-")).get("state", "")
            )
            is_frozen = is_frozen or state_of_power == "frozen"
        check = health.get(name)
        found.append(
            {
                "name": name,
                "pid": pid,
                "running": running,
                "frozen": is_frozen,
                "power": state_of_power or None,
                # node agents and the proxy report readiness once; the rest answer live
                "healthy": bool(
                    running
                    and not is_frozen
                    and state_of_power != "off"
                    and (check() if check else True)
                ),
            }
        )
    return found


def nodes(paths: LabPaths) -> list[dict[str, Any]]:
    result = run_kubectl(
        paths.kubeconfig, paths.logs, "get", "nodes", "-o", "json", check=False, timeout_s=15
    )
    if result.returncode != 0:
        return []
    return [
        {
            "name": item["metadata"]["name"],
            "ready": ready_condition(item),
            "unschedulable": bool(item["spec"].get("unschedulable")),
            "taints": [f"{t['key']}:{t['effect']}" for t in item["spec"].get("taints", [])],
        }
        for item in json.loads(result.stdout).get("items", [])
    ]


def report(
    state: dict[str, Any], paths: LabPaths, ports: Ports, bin_dir: Path, checks: list[Component]
) -> dict[str, Any]:
    found = components(state, paths, checks)
    up = bool(found) and all(c["running"] for c in found)
    return {
        "lab_dir": str(paths.root),
        "topology": state.get("topology"),
        "versions": state.get("versions", {"kubernetes": KUBERNETES_VERSION, "etcd": ETCD_VERSION}),
        "up": up,
        "components": found,
        "nodes": nodes(paths) if found and all(c["running"] for c in found[:2]) else [],
        "endpoints": {
            "kube-apiserver": f"https://{HOST}:{ports.apiserver}",
            "s3": state.get("endpoint"),
            "kubeconfig": str(paths.kubeconfig),
            "env": str(paths.env_file),
        },
        "up_seconds": state.get("up_seconds"),
        "binaries": {name: str(bin_dir / name) for name in BINARIES},
    }
