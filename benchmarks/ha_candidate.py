"""How do the interim singleton and the replicated candidate fare under each fault shape?

For each topology in a scratch lab (a free lab slot of its own), runs every
fault shape with `chaos run` --runs times (the survival control measures the
outage while the fault is live) and reads the evidence records. Prints per
run: verdict, longest outage, failed HEAD / canary samples, HEADs that
answered "no such key", and the reasons; then per shape and topology k/N
survived and the median (range) longest outage.

A run whose authority did not come back by itself while the method ran (the
steady state failed after the fault, or it had not recovered when measurement
ended) had its outage cut off by the experiment's own `within_s` and its
rollback: it is reported as "not recovered, capped at X s" and never divided
into a ratio. A ratio is printed only for a shape where no run of either
topology was capped. Every run uses the same prober mode (a new connection
per HEAD), so nothing is pooled across modes.

Before every run the lab must have settled from the one before (every node
Ready and schedulable, every pod of the state namespace Running and Ready,
the experiments' steady state: key readable, canary round trip, lock
exclusive), with a deadline; how long that took is printed, and a run that
starts on an unsettled lab says so. With --keep DIR the runs' journals,
logs and records are copied there before the scratch lab is removed.

    python benchmarks/ha_candidate.py [--runs 5] [--shapes pod-delete,node-drain,...]
        [--topologies interim,ha-seaweedfs] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from benchkit import REPO, run_experiment
from kubernetes import client, config

from harness.lab.testing import scratch_lab
from harness.lab.topology import STATE_NAMESPACE
from probes.state_authority import canary_round_trip_ok, lock_exclusive, state_key_readable

SETTLE_S = 180.0


SHAPES: dict[str, tuple[str, dict[str, str]]] = {
    "pod-delete": ("pod-delete", {}),
    "node-drain": ("node-drain", {}),
    "kubelet-stop": ("node-unavailable", {"FLYWHEEL_NODE_FAULT_METHOD": "kubelet-stop"}),
    "lab-freeze": ("node-unavailable", {"FLYWHEEL_NODE_FAULT_METHOD": "lab-freeze"}),
    "lab-crash": ("node-crash", {"FLYWHEEL_NODE_CRASH_METHOD": "lab-crash"}),
}


def run_shape(shape: str, env: dict[str, str], work: Path, index: int) -> dict[str, Any]:
    experiment, extra = SHAPES[shape]
    record, _code = run_experiment(experiment, {**env, **extra}, work, f"{shape}-{index}")
    return record


def unsettled(core: client.CoreV1Api, env: dict[str, str]) -> list[str]:
    """What keeps the lab from being the steady state a run must start from ([] when none)."""
    left = []
    for node in core.list_node(_request_timeout=5).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        if not ready or node.spec.unschedulable:
            left.append(f"node {node.metadata.name} {'cordoned' if ready else 'not Ready'}")
    for pod in core.list_namespaced_pod(STATE_NAMESPACE, _request_timeout=5).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if (
            pod.metadata.deletion_timestamp is not None
            or pod.status.phase != "Running"
            or not ready
        ):
            left.append(
                f"pod {pod.metadata.name} {pod.status.phase}{'' if ready else ', not Ready'}"
            )
    if not left:
        # the experiments' own steady state: key readable, canary round trip, lock exclusive
        configuration = {
            "aws_endpoint_url_s3": env["AWS_ENDPOINT_URL_S3"],
            "aws_region": env["AWS_REGION"],
            "tofu_state_bucket": env["TOFU_STATE_BUCKET"],
            "tofu_state_key": env["TOFU_STATE_KEY"],
        }
        secrets = {
            "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        }
        for probe in (state_key_readable, canary_round_trip_ok, lock_exclusive):
            try:
                probe(configuration=configuration, secrets=secrets)
            except Exception as exc:  # ActivityFailed or a connection error: not settled yet
                left.append(f"{probe.__name__} failed ({type(exc).__name__}: {exc})"[:300])
                break
    return left


def settle(core: client.CoreV1Api, env: dict[str, str]) -> tuple[float, list[str]]:
    """Wait (every 1 s, at most SETTLE_S) until the lab has settled: (seconds, what is left)."""
    started = time.monotonic()
    left = unsettled(core, env)
    while left and time.monotonic() - started < SETTLE_S:
        time.sleep(1.0)
        left = unsettled(core, env)
    return round(time.monotonic() - started, 1), left


def capped(record: dict[str, Any]) -> bool:
    prober = record.get("prober") or {}
    after = (record.get("steady_states") or {}).get("after")
    return after is False or prober.get("recovered") is False


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    measured = [r for r in runs if (r.get("prober") or {}).get("samples")]
    outages = [float(r["prober"]["longest_outage_ms"]) / 1000 for r in measured]
    return {
        "runs": len(runs),
        "survived": sum(1 for r in runs if r.get("verdict") == "survived"),
        "verdicts": [r.get("verdict") for r in runs],
        "capped": sum(1 for r in measured if capped(r)),
        "median_s": round(statistics.median(outages), 2) if outages else None,
        "min_s": round(min(outages), 2) if outages else None,
        "max_s": round(max(outages), 2) if outages else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--topologies", default="interim,ha-seaweedfs")
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--keep", default="", help="copy the runs' journals, logs, records here")
    args = parser.parse_args()
    shapes = args.shapes.split(",")
    results: dict[str, dict[str, Any]] = {}
    for topology in args.topologies.split(","):
        root = REPO / f".lab-bench-{topology}"
        with scratch_lab(root, topology) as lab:
            print(f"== {topology}: lab up in {lab.read_state().get('up_seconds')} s", flush=True)
            env = lab.env_values()
            env["FLYWHEEL_EVIDENCE_DIR"] = str(root / "work" / "evidence")
            env["FLYWHEEL_STATE_DIR"] = str(root / "work" / "state")
            (root / "work").mkdir(exist_ok=True)
            core = client.CoreV1Api(
                config.new_client_from_config(config_file=str(lab.paths.kubeconfig))
            )
            for shape in shapes:
                runs = []
                for index in range(1, args.runs + 1):
                    waited, left = settle(core, env)
                    print(
                        f"{topology:13} {shape:13} run {index}: lab settled after {waited} s"
                        + (f"; NOT settled: {', '.join(left)}" if left else ""),
                        flush=True,
                    )
                    record = run_shape(shape, env, root / "work", index)
                    runs.append(record)
                    prober = record.get("prober") or {}
                    longest = float(prober.get("longest_outage_ms") or 0.0)
                    print(
                        f"{topology:13} {shape:13} run {index}: {record.get('verdict'):13} "
                        f"longest outage {longest / 1000:6.2f} s{' (capped)' if capped(record) else ''} | "
                        f"HEAD failed {prober.get('head_failures')}/{prober.get('head_samples')} | "
                        f"canary failed {prober.get('canary_failures')}/{prober.get('canary_samples')} | "
                        f"state key missing {prober.get('state_key_missing', 0)} | "
                        + "; ".join(record.get("reasons") or []),
                        flush=True,
                    )
                results.setdefault(shape, {})[topology] = summary(runs)
            if args.keep:
                shutil.copytree(root / "work", Path(args.keep) / topology, dirs_exist_ok=True)
    print("per shape and topology: survived k/N, longest outage median (range)")
    for shape in shapes:
        cells = []
        for topology, s in results.get(shape, {}).items():
            if s["median_s"] is None:
                cells.append(f"{topology} {s['survived']}/{s['runs']} survived, nothing measured")
                continue
            outage = f"{s['median_s']:.2f} s ({s['min_s']:.2f}-{s['max_s']:.2f})"
            if s["capped"]:
                outage = f"not recovered in {s['capped']}/{s['runs']}, capped at {s['max_s']:.2f} s; median {outage}"
            cells.append(f"{topology} {s['survived']}/{s['runs']} survived, {outage}")
        line = f"  {shape:13} " + " | ".join(cells)
        topologies = list(results.get(shape, {}).values())
        if len(topologies) == 2 and all(t["median_s"] and not t["capped"] for t in topologies):
            a, b = topologies
            line += f" | ratio {a['median_s'] / max(0.01, b['median_s']):.1f}x"
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
