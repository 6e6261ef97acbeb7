"""What one bake-off run costs, from a bake-off's own output (`flywheel-chaos bakeoff --out DIR`).

For every fault run of every candidate: its wall time including the return to a settled lab
(the `chaos run` process from start to exit, plus the wait until the lab is settled again),
and the harness's own share of it: everything but the experiment's own activities (the
steady-state probes before and after, the fault and the waits the method asks for, the
rollbacks, each as Chaos Toolkit's journal times it) and the settle wait. Median and p95 per
candidate; targets: median under 60 s per run, harness share under 10 %.

    python benchmarks/bakeoff_cost.py DIR
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _activities_s(journal: dict[str, Any]) -> float:
    """Seconds of the experiment's own activities (probes, method, rollbacks)."""
    total = sum(float(r.get("duration") or 0) for r in journal.get("run") or [])
    total += sum(float(r.get("duration") or 0) for r in journal.get("rollbacks") or [])
    states = journal.get("steady_states") or {}
    for phase in ("before", "after"):
        for probe in (states.get(phase) or {}).get("probes") or []:
            total += float(probe.get("duration") or 0)
    return total


def candidate_cost(folder: Path) -> dict[str, Any] | None:
    runs = [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines() if line]
    faults = [r for r in runs if r.get("kind") == "fault"]
    if not faults:
        return None
    walls, shares, settles = [], [], []
    for run in faults:
        journal_path = folder / "runs" / f"{run['fault']}-{run['index']}.journal.json"
        if not journal_path.exists():
            continue
        journal = json.loads(journal_path.read_text())
        settle = float(run.get("settled_s") or 0.0)
        wall = float(run["seconds"]) + settle
        own = max(0.0, float(run["seconds"]) - _activities_s(journal))
        walls.append(wall)
        settles.append(settle)
        shares.append(own / wall * 100 if wall else 0.0)
    if not walls:
        return None
    return {
        "candidate": faults[0]["candidate"],
        "runs": len(walls),
        "wall_median_s": round(statistics.median(walls), 1),
        "wall_p95_s": round(_p95(walls), 1),
        "settle_median_s": round(statistics.median(settles), 1),
        "harness_share_median_pct": round(statistics.median(shares), 1),
        "harness_share_p95_pct": round(_p95(shares), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path, help="a bake-off's --out directory")
    args = parser.parse_args()
    folders = sorted(p for p in args.out.iterdir() if (p / "runs.jsonl").exists())
    if not folders:
        print(f"no candidate folders with runs.jsonl under {args.out}", file=sys.stderr)
        return 2
    print(f"{'candidate':26s} runs  wall median  p95   settle  harness share median  p95")
    for folder in folders:
        cost = candidate_cost(folder)
        if cost is None:
            continue
        print(
            f"{cost['candidate']:26s} {cost['runs']:4d}  {cost['wall_median_s']:8.1f} s "
            f"{cost['wall_p95_s']:6.1f} s {cost['settle_median_s']:5.1f} s  "
            f"{cost['harness_share_median_pct']:12.1f} %  {cost['harness_share_p95_pct']:6.1f} %"
        )
    print("targets: median wall under 60 s per run; harness share under 10 %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
