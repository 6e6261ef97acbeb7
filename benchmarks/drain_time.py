"""Drain time of bumble in the lab: ours vs chaostoolkit-kubernetes vs kubectl drain.

Each tool drains the same lab pods off bumble once (the state authority and
six simulated pods of a Deployment pinned to bumble's zone), from "start" to
"every evicted pod is gone"; bumble is uncordoned and the pods come back
between tools. Prints seconds and ratios against kubectl.

    python benchmarks/drain_time.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from kubernetes import client, config

from harness.lab.cluster import scratch_lab
from harness.processes import wait_until

REPO = Path(__file__).resolve().parent.parent

FILLER = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "drain-filler", "namespace": "nix-cache"},
    "spec": {
        "replicas": 6,
        "selector": {"matchLabels": {"app": "drain-filler"}},
        "template": {
            "metadata": {"labels": {"app": "drain-filler"}},
            "spec": {
                "nodeSelector": {"openebs.io/nodeid": "bumble"},
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}],
            },
        },
    },
}


def main() -> int:
    root = REPO / ".lab-bench-drain"
    with scratch_lab(root) as lab:
        env = lab.env_values()
        os.environ.update(env)
        os.environ["FLYWHEEL_STATE_DIR"] = str(root / "state")
        api = config.new_client_from_config(config_file=env["KUBECONFIG"])
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        apps.create_namespaced_deployment("nix-cache", FILLER)

        def settled() -> bool:
            pods = core.list_namespaced_pod("nix-cache").items
            running = [
                p
                for p in pods
                if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
            ]
            return len(running) == 7 and all(p.spec.node_name == "bumble" for p in running)

        def ready_again() -> None:
            core.patch_node("bumble", {"spec": {"unschedulable": None}})
            wait_until(settled, 180, "all 7 pods running on bumble again", interval_s=0.5)

        ready_again()
        results: dict[str, float] = {}

        # each tool as its own process, as an operator runs it
        def python(code: str) -> None:
            subprocess.run(
                [sys.executable, "-c", code],
                check=True,
                capture_output=True,
                timeout=320,
                env=os.environ,
            )

        def ours() -> None:
            python(
                "from actions.nodes import drain_node; drain_node(name='bumble', timeout_s=300, configuration="
                "{'flywheel_node_allowlist': 'bumble', 'flywheel_namespace_allowlist': 'nix-cache'})"
            )

        def chaosk8s() -> None:
            python(
                "from chaosk8s.node.actions import drain_nodes; "
                "drain_nodes(name='bumble', timeout=300, delete_pods_with_local_storage=True)"
            )

        def kubectl() -> None:
            subprocess.run(
                [
                    str(Path(sys.executable).parent / "kubectl"),
                    "drain",
                    "bumble",
                    "--ignore-daemonsets",
                    "--delete-emptydir-data",
                    "--timeout=300s",
                ],
                check=True,
                capture_output=True,
                timeout=320,
            )

        for name, drain in (
            ("kubectl drain", kubectl),
            ("flywheel-chaos drain_node", ours),
            ("chaosk8s drain_nodes", chaosk8s),
        ):
            started = time.perf_counter()
            try:
                drain()
                results[name] = time.perf_counter() - started
                print(f"{name:28s} {results[name]:6.1f} s")
            except subprocess.CalledProcessError as exc:
                last = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
                print(f"{name:28s} failed after {time.perf_counter() - started:.1f} s: {last}")
            ready_again()
        base = results.get("kubectl drain")
        if base:
            for name, seconds in results.items():
                print(f"  {name:26s} {seconds / base:5.2f}x kubectl")
        print("targets: ours <= 1.2x kubectl")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
