"""The gate and `evidence verify` over 10,000 records, against the verifier before them.

Writes N records with the project's own writer (v2, each with a fingerprint and
a fault effect, chained) into a scratch directory, then times, in one run and
alternating the order:

  verify   harness.record.evidence.verify (form, schema, hashes, chain) over all
  before   the same directory through the verifier of commit e310548 (before
           schema v2, signatures and the store), loaded from git history
  gate     verify plus the gate's evidence rows for every requirement (the part
           of `flywheel-chaos gate` that grows with the records; its live S3
           checks and cluster reads do not)

and prints the median of each and the time per record. Targets: verify and gate
under 2 s for 10,000 records.

    python benchmarks/gate_scale.py [--records 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

from harness.record.evidence import new_record, verify, write_record
from harness.record.gate import _evidence_row, load_policy

REPO = Path(__file__).resolve().parent.parent
BEFORE = "e310548"
LIVE: dict[str, Any] = {
    "endpoint": "http://127.96.0.10:9000",
    "bucket": "tofu-state",
    "key": "k",
    "harness_version": "0.2.0",
    "cluster": {"kube_system_uid": "u", "api_server": "https://127.0.0.1:26443"},
    "workloads": [],
    "claims": [],
}


def _before(path: str) -> str:
    """``path`` as it was at commit BEFORE."""
    return subprocess.run(
        ["git", "show", f"{BEFORE}:{path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout


def old_verifier() -> Any:
    """``verify`` of harness/evidence.py at commit e310548, loaded from git."""
    source = _before("harness/evidence.py")
    schema = _before("harness/evidence.schema.json")
    module = types.ModuleType("evidence_before")
    module.__dict__["__file__"] = "evidence_before.py"
    sys.modules["evidence_before"] = module  # its dataclasses look themselves up there
    exec(compile(source, "evidence_before.py", "exec"), module.__dict__)
    module.__dict__["_schema"] = lambda: __import__("json").loads(schema)
    return module.verify


def write(directory: Path, count: int) -> float:
    started = time.perf_counter()
    faults = ("pod-delete", "node-drain", "node-unavailable")
    effect = {"took_effect": True, "dry_run": False, "why": "synthetic"}
    for index in range(count):
        write_record(
            new_record(
                fault=faults[index % 3],
                verdict="survived",
                reasons=["synthetic"],
                fingerprint=LIVE,
                fault_effect=effect,
                prober={"longest_outage_ms": 500.0},
            ),
            directory,
        )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    before = old_verifier()
    policy = load_policy(REPO / "gate.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        seconds = write(directory, args.records)
        print(f"wrote {args.records} records in {seconds:.1f} s with the project's writer")

        def ours() -> None:
            verified = [v for v in verify(directory) if v.ok]
            assert len(verified) == args.records

        def gate() -> None:
            verified = [v for v in verify(directory) if v.ok]
            now = dt.datetime.now(dt.UTC)
            rows = [
                _evidence_row(r, verified, LIVE, now)
                for r in policy.requirements
                if r.kind == "experiment"
            ]
            assert all(row.status == "proven" for row in rows), [row.detail for row in rows]

        def old() -> None:
            results = before(directory)
            assert len(results) == args.records

        samples: dict[str, list[float]] = {"verify": [], "before": [], "gate": []}
        plan = [("verify", ours), ("before", old), ("gate", gate)]
        for index in range(args.rounds):
            order = plan[index % 3 :] + plan[: index % 3]
            for name, fn in order:
                started = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - started)
        for name, values in samples.items():
            median = statistics.median(values)
            print(
                f"  {name:7s} median {median:6.2f} s ({min(values):.2f}-{max(values):.2f}), "
                f"{median / args.records * 1e6:6.1f} us per record"
            )
        ratio = statistics.median(samples["verify"]) / statistics.median(samples["before"])
        print(f"  verify / before: {ratio:.2f}x; targets: verify and gate < 2 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
