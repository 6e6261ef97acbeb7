"""How long an RCA bundle takes with each disk view: the lab's directories or the debug pods.

In a scratch lab of TOPOLOGY, collects --rounds bundles per mode, the order
alternating each round, the same authority and end condition (a complete
bundle with no note), and prints each mode's seconds, sorted. In the lab the
debug pods need no image pull: on a real cluster that comes on top.

    python benchmarks/rca_disk_view.py [--rounds 5] [--topology ha-seaweedfs]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from flywheel_chaos.s3.authority import load_authority
from harness.lab.testing import scratch_lab
from harness.record.rca import collect

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--topology", default="ha-seaweedfs")
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {"lab": [], "debug-pod": []}
    with scratch_lab(REPO / f".lab-bench-rca-{args.topology}", args.topology) as lab:
        os.environ.update(lab.env_values())
        work = Path(tempfile.mkdtemp(prefix="bench-rca-"))
        authority = load_authority()
        for index in range(args.rounds):
            order = ["lab", "debug-pod"] if index % 2 == 0 else ["debug-pod", "lab"]
            for mode in order:
                bundle = collect(authority, work / f"{mode}-{index}.tar.gz", disk_view=mode)
                if bundle["notes"]:
                    print(f"round {index + 1} {mode}: notes {bundle['notes']}", flush=True)
                seconds[mode].append(bundle["seconds"])
    for mode, values in seconds.items():
        print(f"{args.topology} {mode}: {sorted(values)} s per bundle ({len(values)} bundles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
