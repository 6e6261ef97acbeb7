"""What the flywheel controls cost a run: the smoke experiment with and without them.

In a scratch lab (interim: RustFS, unless --topology), `chaos run` of the shipped
state-authority-smoke experiment as it is (no controls), and of the same experiment with the
controls every fault experiment carries added (safety: the lease and its keeper; survival:
the prober's threads; evidence: the record, its signature and chain, the journal's
redaction), same probes, same server, same lab, the order rotated, 5 runs each. Reported:
each side's wall time (process start to exit) and Chaos Toolkit's own run duration from the
journal, and the controls' share of the run with them.

    python benchmarks/controls_overhead.py [--runs 5] [--topology interim]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from harness.lab.testing import scratch_lab

REPO = Path(__file__).resolve().parent.parent
CHAOS = Path(sys.executable).parent / "chaos"

CONTROLS = [
    {"name": "safety", "provider": {"type": "python", "module": "harness.controls.safety"}},
    {
        "name": "survival",
        "provider": {
            "type": "python",
            "module": "harness.controls.survival",
            "arguments": {"outage_budget_s": 60},
        },
    },
    {
        "name": "evidence",
        "provider": {
            "type": "python",
            "module": "harness.controls.evidence",
            "arguments": {"fault": "state-authority-smoke", "proof": True},
        },
    },
]


TIMED_CHAOS = """
import atexit, json, sys, time
t0 = time.perf_counter()
import chaoslib.control as control
spent = {}
def timed(name, original):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            key = name(*args, **kwargs)
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - started
    return wrapper
control.validate_python_control = timed(
    lambda c: f"{c['name']}: import and validate", control.validate_python_control)
control.initialize_control = timed(
    lambda c, *a, **k: f"{c['name']}: configure", control.initialize_control)
control.cleanup_control = timed(lambda c: f"{c['name']}: cleanup", control.cleanup_control)
control.apply_python_control = timed(
    lambda level, control, **k: f"{control['name']}: {level}", control.apply_python_control)
atexit.register(lambda: print("TIMINGS " + json.dumps(
    {"wall_s": time.perf_counter() - t0, "controls_s": spent}), file=sys.stderr))
from chaostoolkit.__main__ import cli
sys.argv = ["chaos", *sys.argv[1:]]
cli()
"""
"""``chaos`` with each control's import and each of its hooks timed (printed on stderr)."""


def where_the_time_goes(experiment: Path, env: dict[str, str], work: Path) -> dict[str, float]:
    """Seconds per control and hook over one ``chaos run`` of ``experiment`` (not profiled:
    wall time around chaoslib's calls of our control functions)."""
    result = subprocess.run(
        [sys.executable, "-c", TIMED_CHAOS, "--log-file", str(work / "timed.log"), "run",
         "--journal-path", str(work / "timed.journal.json"), str(experiment)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    line = next(x for x in result.stderr.splitlines() if x.startswith("TIMINGS "))
    timings: dict[str, float] = json.loads(line.removeprefix("TIMINGS "))["controls_s"]
    return timings


def run(experiment: Path, env: dict[str, str], work: Path, name: str) -> tuple[float, float]:
    """Wall seconds of one ``chaos run`` and the journal's own duration."""
    journal = work / f"{name}.journal.json"
    started = time.perf_counter()
    result = subprocess.run(
        [str(CHAOS), "--log-file", str(work / f"{name}.log"), "run", "--journal-path",
         str(journal), str(experiment)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    wall = time.perf_counter() - started
    document = json.loads(journal.read_text())
    assert result.returncode == 0 and not document["deviated"], result.stdout[-2000:]
    return wall, float(document["duration"])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--topology", default="interim")
    args = parser.parse_args()
    root = REPO / ".lab-bench-controls"
    with scratch_lab(root / "lab", args.topology) as lab:
        env = lab.env_values()
        env["FLYWHEEL_EVIDENCE_DIR"] = str(root / "evidence")
        env["FLYWHEEL_STATE_DIR"] = str(root / "state")
        work = root / "work"
        work.mkdir(parents=True, exist_ok=True)
        shipped = REPO / "experiments" / "state-authority-smoke.yaml"
        document = yaml.safe_load(shipped.read_text())
        document["controls"] = CONTROLS
        document["runtime"] = {"rollbacks": {"strategy": "always"}}
        controlled = work / "smoke-with-controls.yaml"
        controlled.write_text(yaml.safe_dump(document, sort_keys=False))
        sides = {"without controls": shipped, "with controls": controlled}
        walls: dict[str, list[float]] = {side: [] for side in sides}
        durations: dict[str, list[float]] = {side: [] for side in sides}
        for side, path in sides.items():  # warm caches on both sides once
            run(path, env, work, f"warm-{side.replace(' ', '-')}")
        for index in range(args.runs):
            order = list(sides.items()) if index % 2 == 0 else list(sides.items())[::-1]
            for side, path in order:
                wall, duration = run(path, env, work, f"{index}-{side.replace(' ', '-')}")
                walls[side].append(wall)
                durations[side].append(duration)
                print(
                    f"run {index + 1} {side:17s} wall {wall:5.2f} s, chaos duration {duration:5.2f} s",
                    flush=True,
                )
        breakdown = [where_the_time_goes(controlled, env, work) for _ in range(3)]
    print(f"median (range) of {args.runs} runs each, order rotated, topology {args.topology}:")
    for side in sides:
        print(f"  {side:17s} wall {statistics.median(walls[side]):5.2f} s "
              f"({min(walls[side]):.2f}-{max(walls[side]):.2f}), chaos duration "
              f"{statistics.median(durations[side]):5.2f} s")  # fmt: skip
    with_, without = (
        statistics.median(walls["with controls"]),
        statistics.median(walls["without controls"]),
    )
    print(f"controls' share of the run with them: {(with_ - without) / with_ * 100:.1f} % "
          f"({with_ - without:+.2f} s; target < 10 %)")  # fmt: skip
    print("where the controls' time goes (median of 3 timed runs with controls, seconds):")
    for hook in sorted(
        breakdown[0], key=lambda h: -statistics.median(b.get(h, 0) for b in breakdown)
    ):
        seconds = statistics.median(b.get(hook, 0.0) for b in breakdown)
        if seconds >= 0.005:
            print(f"  {hook:45s} {seconds:5.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
