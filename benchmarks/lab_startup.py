"""`flywheel-chaos lab up` with cached binaries, until the state authority serves S3; and memory.

Runs `lab up` (kept data, as an operator's second start) three times in a
scratch lab directory, timing each whole command, then sums the resident
memory of every lab process (control plane, node agents, service proxy and
the pods' processes). kind is not runnable here (no container engine): its
figure is the published 30-60 s start of a one-node cluster, quoted, not
measured.

    python benchmarks/lab_startup.py [--rounds 3] [--topology interim]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness.lab.paths import free_ports
from harness.lab.topology import needs_rustfs
from harness.processes import rss_mib

REPO = Path(__file__).resolve().parent.parent
KIND_SECONDS = (30.0, 60.0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--topology", default="interim")
    args = parser.parse_args()
    lab_dir = REPO / f".lab-bench-startup-{args.topology}"
    shutil.rmtree(lab_dir, ignore_errors=True)
    cli = str(Path(sys.executable).parent / "flywheel-chaos")
    # a lab slot of its own: never the default lab's ports or addresses
    env = {
        **os.environ,
        "FLYWHEEL_LAB_DIR": str(lab_dir),
        "FLYWHEEL_LAB_PORT_OFFSET": str(free_ports().offset),
    }
    build = [cli, "lab", "build", *(["--rustfs"] if needs_rustfs(args.topology) else [])]
    subprocess.run(build, env=env, check=True, capture_output=True, timeout=7200)
    times = []
    try:
        for round_ in range(args.rounds + 1):
            started = time.perf_counter()
            subprocess.run(
                [cli, "lab", "up", "--topology", args.topology],
                env=env,
                check=True,
                capture_output=True,
                timeout=600,
            )
            elapsed = time.perf_counter() - started
            label = "first (fresh data)" if round_ == 0 else f"round {round_}"
            print(f"lab up {label}: {elapsed:.1f} s")
            if round_:
                times.append(elapsed)
            if round_ == args.rounds:
                time.sleep(5)  # let the pods settle before measuring memory
                state = json.loads((lab_dir / "state.json").read_text())
                pids = [int(c["pid"]) for c in state["components"]]
                pods = [int(p.read_text()) for p in lab_dir.glob("nodes/*/pods/*/*.pid")]
                children = []
                for pid in pids + pods:
                    out = subprocess.run(
                        ["pgrep", "-g", str(pid)], capture_output=True, text=True
                    ).stdout
                    children += [int(x) for x in out.split()]
                memory = rss_mib(sorted(set(pids + pods + children)))
            subprocess.run(
                [cli, "lab", "down"], env=env, check=True, capture_output=True, timeout=120
            )
    finally:
        subprocess.run([cli, "lab", "down", "--clean"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(lab_dir, ignore_errors=True)
    median = statistics.median(times)
    print(
        f"lab up --topology {args.topology} with cached binaries and kept data, median (range) of "
        f"{len(times)}: {median:.1f} s ({min(times):.1f}-{max(times):.1f}; target <= 20 s)"
    )
    print(
        f"  vs kind's 30-60 s (quoted): {median / KIND_SECONDS[0]:.2f}x - {median / KIND_SECONDS[1]:.2f}x"
    )
    print(f"resident memory of the running lab: {memory:.0f} MiB (target <= 2048 MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
