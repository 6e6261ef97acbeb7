"""What the flywheel controls cost a run: the smoke experiment with and without them.

In a scratch lab (interim: RustFS, unless --topology), `chaos run` of the shipped
state-authority-smoke experiment as it is (no controls), and of the same experiment with the
controls every fault experiment carries added (safety: the lease and its keeper; survival:
the prober's threads; evidence: the record, its signature and chain, the journal's
redaction), same probes, same server, same lab, the order rotated, 5 runs each. Reported:
each side's wall time (process start to exit) and Chaos Toolkit's own run duration from the
journal, and the controls' share of the run with them. Then the floor: the prober's CPU
per second of sampling and the CPU of the imports that signing and the lease need, which a
faster control cannot shed; their sum over the run, as a share of the run without controls.

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


PROBER_CPU = """
import json, sys, time
from flywheel_chaos.s3.authority import load_authority
from harness.controls.prober import Prober
warm = Prober(load_authority())  # botocore's first clients (the model's parse): not counted
warm.start()
time.sleep(1.0)
warm.stop()
rounds = []
for _ in range(int(sys.argv[1])):
    prober = Prober(load_authority())
    cpu, wall = time.process_time(), time.time()
    prober.start()
    time.sleep(5.0)
    prober.stop()
    cpu, wall = time.process_time() - cpu, time.time() - wall
    rounds.append({"cpu_ms_per_s": 1000 * cpu / wall, "samples": len(prober.snapshot()),
                   "cpu_ms_per_sample": 1000 * cpu / max(1, len(prober.snapshot()))})
print("PROBER " + json.dumps(rounds))
"""
"""The CPU the prober's two threads spend per second of sampling, in a process otherwise
idle (a first prober, stopped before, has made botocore's first clients)."""

IMPORT_CPU = """
import importlib, sys, time
import chaostoolkit.__main__, chaoslib.experiment, probes.state_authority
cpu = time.process_time()
for name in sys.argv[1].split(","):
    importlib.import_module(name)
print(f"IMPORT {1000 * (time.process_time() - cpu):.2f}")
"""
"""CPU of importing modules on top of what ``chaos run`` of the smoke experiment imports."""

FLOOR_IMPORTS = {
    "the signature's library (cryptography, Ed25519)": (
        "cryptography.hazmat.primitives.asymmetric.ed25519,"
        "cryptography.hazmat.primitives.serialization"
    ),
    "the safety control (the Kubernetes client for the lease)": "harness.controls.safety",
}


def floor(env: dict[str, str], rounds: int) -> tuple[float, dict[str, float]]:
    """What no faster control can shed on this run: the prober's CPU per second of
    sampling (median of ``rounds`` 5 s rounds) and the CPU of the imports signing and the
    lease need (median of 5 fresh processes each), in milliseconds."""
    result = subprocess.run(
        [sys.executable, "-c", PROBER_CPU, str(rounds)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60 + 10 * rounds,
    )  # fmt: skip
    line = next((x for x in result.stdout.splitlines() if x.startswith("PROBER ")), None)
    if line is None:
        raise SystemExit(f"the prober's CPU was not measured: {result.stderr[-2000:]}")
    prober = json.loads(line.removeprefix("PROBER "))
    for index, sample in enumerate(prober):
        print(f"  prober round {index + 1}: {sample['samples']} samples in 5 s, "
              f"{sample['cpu_ms_per_s']:.1f} ms CPU per s, {sample['cpu_ms_per_sample']:.2f} "
              "per sample")  # fmt: skip
    imports: dict[str, float] = {}
    for what, modules in FLOOR_IMPORTS.items():
        spent = []
        for _ in range(5):
            timed = subprocess.run(
                [sys.executable, "-c", IMPORT_CPU, modules],
                env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            found = [x for x in timed.stdout.splitlines() if x.startswith("IMPORT ")]
            if not found:
                raise SystemExit(f"importing {modules} was not timed: {timed.stderr[-2000:]}")
            spent.append(float(found[0].removeprefix("IMPORT ")))
        imports[what] = statistics.median(spent)
        print(f"  importing {what}: {imports[what]:.1f} ms CPU (median of 5: {spent})")
    return statistics.median(x["cpu_ms_per_s"] for x in prober), imports


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
        for warm in range(3):  # warm caches on both sides; a new lab's first minute is busy
            for side, path in sides.items():
                run(path, env, work, f"warm-{warm}-{side.replace(' ', '-')}")
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
        print("the floor (what the controls cannot shed on a run this short):")
        prober_ms_per_s, imports = floor(env, rounds=max(3, args.runs // 2))
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
    sampled_s = statistics.median(durations["with controls"])
    floor_ms = prober_ms_per_s * sampled_s + sum(imports.values())
    print(f"floor: the prober {prober_ms_per_s:.1f} ms CPU per s over Chaos Toolkit's run "
          f"({sampled_s:.2f} s) plus those imports: {floor_ms:.0f} ms CPU, "
          f"{floor_ms / 1000 / without * 100:.1f} % of the run without controls "
          "(not counted: the lease's API calls, the record's schema, signature and chain)")  # fmt: skip
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
