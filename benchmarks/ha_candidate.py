"""How do the interim singleton and the replicated candidate fare under each fault?

For each topology (interim, then ha) in a scratch lab, runs the fault
experiments with `chaos run` (the survival control measures the outage while
the fault is live) --runs times each and reads the evidence records. Prints
per run: verdict, longest outage, failed HEAD / canary samples, HEADs that
answered "no such key", and the reasons; then the median longest outage per
fault and topology with the ratio interim / ha.

    python benchmarks/ha_candidate.py [--runs 1] [--faults pod-delete,node-drain,node-unavailable]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.lab.cluster import scratch_lab
from harness.record.evidence import record_files

REPO = Path(__file__).resolve().parent.parent
CHAOS = Path(sys.executable).parent / "chaos"


def run_fault(fault: str, env: dict[str, str], work: Path, index: int) -> dict[str, Any]:
    evidence = work / "evidence"
    before = set(record_files(evidence))
    subprocess.run(
        [
            str(CHAOS),
            "--log-file",
            str(work / f"{fault}-{index}.log"),
            "run",
            "--journal-path",
            str(work / f"{fault}-{index}.journal.json"),
            str(REPO / "experiments" / f"{fault}.yaml"),
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    new = [p for p in record_files(evidence) if p not in before]
    if not new:
        return {"verdict": "no evidence", "reasons": ["the run recorded nothing"], "prober": {}}
    record: dict[str, Any] = json.loads(new[0].read_text())
    return record


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--faults", default="pod-delete,node-drain,node-unavailable")
    parser.add_argument("--topologies", default="interim,ha")
    args = parser.parse_args()
    faults = args.faults.split(",")
    outages: dict[tuple[str, str], list[float]] = {}
    for topology in args.topologies.split(","):
        root = REPO / f".lab-bench-{topology}"
        with scratch_lab(root, topology) as lab:
            print(f"== {topology}: lab up in {lab.read_state().get('up_seconds')} s")
            env = lab.env_values()
            env["FLYWHEEL_EVIDENCE_DIR"] = str(root / "work" / "evidence")
            env["FLYWHEEL_STATE_DIR"] = str(root / "work" / "state")
            (root / "work").mkdir(exist_ok=True)
            for fault in faults:
                for index in range(1, args.runs + 1):
                    record = run_fault(fault, env, root / "work", index)
                    prober = record.get("prober") or {}
                    longest = float(prober.get("longest_outage_ms") or 0.0)
                    if prober.get("samples"):  # runs that measured (not refused, not erred before)
                        outages.setdefault((topology, fault), []).append(longest)
                    print(
                        f"{topology:8} {fault:17} run {index}: {record.get('verdict'):13} "
                        f"longest outage {longest / 1000:6.2f} s | HEAD failed "
                        f"{prober.get('head_failures')}/{prober.get('head_samples')} | canary failed "
                        f"{prober.get('canary_failures')}/{prober.get('canary_samples')} | "
                        f"state key missing {prober.get('state_key_missing', 0)} | "
                        + "; ".join(record.get("reasons") or [])
                    )
    print("median longest outage (s):")
    for fault in faults:
        interim = outages.get(("interim", fault))
        ha = outages.get(("ha", fault))
        line = f"  {fault:17}"
        if interim:
            line += f" interim {statistics.median(interim) / 1000:6.2f}"
        if ha:
            line += f" | ha {statistics.median(ha) / 1000:6.2f}"
        if interim and ha:
            line += f" | ratio interim/ha {statistics.median(interim) / max(1.0, statistics.median(ha)):.1f}x"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
