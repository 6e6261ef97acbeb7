"""Drain time of bumble in the lab: ours vs chaostoolkit-kubernetes vs kubectl drain.

Each tool drains the same lab pods off bumble (the state authority and six
simulated pods of a Deployment pinned to bumble), as its own process, from
start to exit (each tool waits until every evicted pod is gone). Like for
like: before every drain bumble is uncordoned (and any rollback intent
undone with `recover`), all 7 pods are Running and Ready on bumble and the
state authority serves S3 again; the tools' order rotates from round to
round. Besides each tool's wall time it reports when the state authority's
own pod was gone, seen by a watcher in this process, since that pod's
shutdown (its grace period) dominates every tool.

    python benchmarks/drain_time.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kubernetes import client, config

from harness.lab.testing import scratch_lab
from harness.processes import wait_until
from harness.recover import recover
from probes.state_authority import state_authority_serving_within

REPO = Path(__file__).resolve().parent.parent

TIMED_DRAIN = """
import json, time
t0 = time.perf_counter()
import flywheel_chaos  # first, as chaos's import of actions.nodes does: the client stays lazy
from kubernetes.client import api_client
calls = []
call_api = api_client.ApiClient.call_api
def timed(self, resource_path, method, *args, **kwargs):
    started = time.perf_counter()
    try:
        return call_api(self, resource_path, method, *args, **kwargs)
    finally:
        calls.append([round(started - t0, 3), method, resource_path,
                      round(time.perf_counter() - started, 3)])
api_client.ApiClient.call_api = timed
from harness.controls.lease import holding_lease
from actions.nodes import drain_node
imported = time.perf_counter() - t0
with holding_lease():
    began = time.perf_counter() - t0
    result = drain_node(name='bumble', timeout_s=300)
    drained = time.perf_counter() - t0
print(json.dumps({"import_s": round(imported, 3), "drain_from_s": round(began, 3),
                  "drain_until_s": round(drained, 3), "calls": calls}))
"""
"""Our drain as its own process, every API call timed (its start since the process began,
its method and path, how long it took; a watch counts until its first answer)."""

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
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
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
            ready = [
                p
                for p in pods
                if p.status.phase == "Running"
                and p.metadata.deletion_timestamp is None
                and p.spec.node_name == "bumble"
                and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            ]
            return len(ready) == 7 and len(pods) == 7

        def ready_again() -> None:
            recover()  # undoes our drain's cordon intent
            core.patch_node("bumble", {"spec": {"unschedulable": None}})
            wait_until(settled, 180, "all 7 pods Running and Ready on bumble", interval_s=0.5)
            state_authority_serving_within(within_s=120)
            time.sleep(2.0)  # settled: no tool starts right behind a fresh start

        def python(code: str) -> str:
            return subprocess.run(
                [sys.executable, "-c", code],
                check=True,
                capture_output=True,
                text=True,
                timeout=320,
                env=os.environ,
            ).stdout

        breakdowns: list[dict[str, object]] = []

        def ours() -> None:
            breakdowns.append(json.loads(python(TIMED_DRAIN).strip().splitlines()[-1]))

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

        tools: list[tuple[str, Callable[[], None]]] = [
            ("kubectl drain", kubectl),
            ("flywheel-chaos drain_node", ours),
            ("chaosk8s drain_nodes", chaosk8s),
        ]
        walls: dict[str, list[float]] = {name: [] for name, _ in tools}
        gone: dict[str, list[float]] = {name: [] for name, _ in tools}
        ready_again()
        for round_index in range(args.rounds):
            order = tools[round_index % 3 :] + tools[: round_index % 3]
            for name, drain in order:
                authority = next(
                    p
                    for p in core.list_namespaced_pod("nix-cache").items
                    if p.metadata.name.startswith("attic-rustfs-openebs-")
                )
                seen: dict[str, float] = {}
                started = time.perf_counter()

                def watch(
                    uid: str = authority.metadata.uid,
                    t0: float = started,
                    seen: dict[str, float] = seen,
                ) -> None:
                    while time.perf_counter() - t0 < 300:
                        uids = {p.metadata.uid for p in core.list_namespaced_pod("nix-cache").items}
                        if uid not in uids:
                            seen["gone"] = time.perf_counter() - t0
                            return
                        time.sleep(0.1)

                watcher = threading.Thread(target=watch, daemon=True)
                watcher.start()
                try:
                    drain()
                    walls[name].append(time.perf_counter() - started)
                except subprocess.CalledProcessError as exc:
                    last = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
                    print(f"{name}: failed after {time.perf_counter() - started:.1f} s: {last}")
                watcher.join(timeout=60)
                if "gone" in seen:
                    gone[name].append(seen["gone"])
                print(
                    f"round {round_index + 1} {name:28s} {walls[name][-1] if walls[name] else float('nan'):6.2f} s; "
                    f"state authority pod gone at {seen.get('gone', float('nan')):5.2f} s",
                    flush=True,
                )
                ready_again()
        base = statistics.median(walls["kubectl drain"]) if walls["kubectl drain"] else None
        print(f"median (range) over {args.rounds} rounds, order rotated:")
        for name, samples in walls.items():
            if not samples:
                continue
            ratio = f"{statistics.median(samples) / base:5.2f}x kubectl" if base else ""
            print(
                f"  {name:28s} {statistics.median(samples):6.2f} s ({min(samples):.2f}-{max(samples):.2f}) "
                f"{ratio}; authority pod gone at median {statistics.median(gone[name]) if gone[name] else float('nan'):.2f} s"
            )
        if breakdowns:
            last = breakdowns[-1]
            print(
                f"ours, last round: imports {last['import_s']} s, lease taken and drain from "
                f"{last['drain_from_s']} s to {last['drain_until_s']} s; API calls "
                "(start s, method, path, seconds):"
            )
            for call in last["calls"]:  # type: ignore[union-attr]
                print(f"  {call[0]:7.3f} {call[1]:6s} {call[2]:70s} {call[3]:.3f}")
            imports = [float(b["import_s"]) for b in breakdowns]  # type: ignore[arg-type]
            print(f"ours: imports median {statistics.median(imports):.2f} s of the wall time")
        print("target: ours <= 1.0x kubectl")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
