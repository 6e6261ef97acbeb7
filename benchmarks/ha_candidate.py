"""How does each topology fare under each fault shape? A thin wrapper over the bake-off.

`flywheel-chaos bakeoff` replaced this benchmark: it runs every candidate in a scratch lab
of its own, the proofs, then every fault through `chaos run` of the shipped experiments on a
settled lab, with OpenTofu in the loop, and writes a scorecard (JSON, Markdown, HTML). This
wrapper keeps the old command line working:

    python benchmarks/ha_candidate.py [--runs 5] [--shapes pod-delete,node-drain,...]
                                      [--topologies interim,ha-rustfs] [--keep DIR]

(`--keep DIR` is the bake-off's `--out DIR`; without it the scorecard goes to a temporary
directory that is printed.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ALL_TOPOLOGIES = "interim,ha-rustfs,interim-seaweedfs,ha-seaweedfs"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--shapes", default="", help="comma-separated faults (default: all)")
    parser.add_argument("--topologies", default=ALL_TOPOLOGIES)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    out = args.keep or Path(tempfile.mkdtemp(prefix="flywheel-ha-candidate-"))
    argv = [
        str(Path(sys.executable).parent / "flywheel-chaos"),
        "bakeoff",
        "--runs",
        str(args.runs),
    ]
    argv += [a for t in args.topologies.split(",") if t for a in ("--candidate", t)]
    argv += [a for f in args.shapes.split(",") if f for a in ("--fault", f)]
    argv += ["--out", str(out)]
    code = subprocess.call(argv)
    print(f"scorecard: {out / 'scorecard.md'}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
