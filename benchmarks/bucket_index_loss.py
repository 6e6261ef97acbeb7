"""Does the bucket-index-loss proof hold run after run, per topology?

In a scratch lab of TOPOLOGY (a free lab slot of its own), runs
`experiments/bucket-index-loss.yaml` with `chaos run` --runs times and prints
per run: the verdict, how long the server took to answer NoSuchBucket, how
many of its data files and markers stayed on disk, what CreateBucket answered
in the recovery, whether the RCA bundle taken while the fault was live named
the mismatch, and the rollback; then k/N passed and whether anything of the
scratch buckets is left on the lab's disks. TOPOLOGY: interim-seaweedfs,
ha-seaweedfs, interim or ha-rustfs (the last two need RustFS built).

    python benchmarks/bucket_index_loss.py [--runs 5] [--topology interim-seaweedfs]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchkit import REPO, run_experiment

from harness.lab.testing import scratch_lab


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--topology", default="interim-seaweedfs")
    args = parser.parse_args()
    passed = 0
    with scratch_lab(REPO / f".lab-bench-bil-{args.topology}", args.topology) as lab:
        work = Path(tempfile.mkdtemp(prefix="bench-bil-"))
        env = {
            **lab.env_values(),
            "FLYWHEEL_EVIDENCE_DIR": str(work / "evidence"),
            "FLYWHEEL_STATE_DIR": str(work / "state"),
        }
        for index in range(1, args.runs + 1):
            record, code = run_experiment("bucket-index-loss", env, work, f"run-{index}", 600)
            steps = {s["name"]: s for s in record.get("proof_steps") or []}
            lost = (steps.get("lose-bucket-index") or {}).get("output") or {}
            restore = (steps.get("restore-from-backup") or {}).get("output") or {}
            passed += record.get("verdict") == "passed"
            print(
                f"run {index}: {record.get('verdict', 'no record')} (exit {code}); "
                f"NoSuchBucket after {lost.get('missing_after_s')} s; "
                f"{len(lost.get('kept_on_disk') or [])} kept data files and "
                f"{len(lost.get('markers_on_disk') or [])} markers on disk; "
                f"CreateBucket {(restore.get('index_repair') or {}).get('create_bucket')}; "
                f"live RCA mismatch {(record.get('rca') or {}).get('mismatch')}; "
                f"rollbacks {[r['status'] for r in record.get('rollbacks') or []]}",
                flush=True,
            )
        volumes = lab.paths.root / "nodes"
        left = sorted(
            [
                *volumes.glob("*/volumes/*/flywheel-chaos-index-*"),  # SeaweedFS collections
                *volumes.glob("*/volumes/*/.flywheel-chaos-kept-*"),  # RustFS kept directories
                *volumes.glob("*/volumes/*/.rustfs.sys/buckets/flywheel-chaos-index-*"),
            ]
        )
    print(
        f"{args.topology}: {passed}/{args.runs} passed; left on disk afterwards: {len(left)} files"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
