"""How exactly does the survival prober measure an outage? Inject one of known length.

In a scratch lab, freezes the state authority's S3 process (SIGSTOP of its process group)
for exactly --freeze seconds, then resumes it, while two samplers watch the same endpoint:
  ours  the survival prober (HEAD every 100 ms and the canary, at HEAD pace while down;
        windows from sample times), in this process
  ctk   the real `chaos run --hypothesis-strategy continuously --hypothesis-frequency 1`
        of an experiment whose steady state is the state key's HEAD (probes.state_authority
        state_key_readable, its bound 1 s) and whose method sleeps through the freeze:
        Chaos Toolkit's own loop; its journal's "during" hypotheses turned into windows the
        same way (it computes none itself)
Both run at once on the same freezes; which one starts first alternates from trial to
trial. Prints each one's longest outage, its error against the truth, and the medians.

    python benchmarks/outage_accuracy.py [--freeze 3.0] [--trials 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from flywheel_chaos.s3.authority import load_authority
from harness.controls.prober import Prober, Sample, outage_windows
from harness.lab.testing import scratch_lab
from probes.state_authority import state_authority_serving_within

REPO = Path(__file__).resolve().parent.parent
CHAOS = Path(sys.executable).parent / "chaos"


CTK_EXPERIMENT = {
    "version": "1.0.0",
    "title": "outage accuracy: the state key's HEAD, continuously",
    "description": "benchmarks/outage_accuracy.py",
    "steady-state-hypothesis": {
        "title": "the state key answers HEAD",
        "probes": [
            {
                "type": "probe",
                "name": "state-key-readable",
                "tolerance": {"type": "jsonpath", "path": "$.etag"},
                "provider": {
                    "type": "python",
                    "module": "probes.state_authority",
                    "func": "state_key_readable",
                    "arguments": {"timeout_s": 1.0},
                },
            }
        ],
    },
    "method": [
        {
            "type": "action",
            "name": "wait-through-the-freeze",
            "provider": {"type": "process", "path": "sleep", "arguments": "SECONDS"},
        }
    ],
}


def _epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC).timestamp()


def ctk_samples(journal: dict[str, Any]) -> list[Sample]:
    """Each hypothesis Chaos Toolkit ran during the method, as one HEAD sample."""
    samples = []
    for state in journal["steady_states"]["during"] or []:
        for probe in state["probes"]:
            start, end = _epoch(probe["start"]), _epoch(probe["end"])
            samples.append(
                Sample("head", start, bool(probe["tolerance_met"]), (end - start) * 1000)
            )
    return samples


def start_ctk(work: Path, seconds: float) -> tuple[subprocess.Popen[bytes], Path]:
    document = json.loads(json.dumps(CTK_EXPERIMENT).replace("SECONDS", f"{seconds:.1f}"))
    experiment, journal = work / "continuous.json", work / "continuous.journal.json"
    experiment.write_text(json.dumps(document))
    journal.unlink(missing_ok=True)
    process = subprocess.Popen(
        [str(CHAOS), "--log-file", str(work / "continuous.log"), "run", "--hypothesis-strategy",
         "continuously", "--hypothesis-frequency", "1", "--journal-path", str(journal),
         str(experiment)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    return process, journal


def _closing(samples: list[Sample], resumed: float) -> str:
    """For each signal: its last failure and its first success after the resume, in ms
    since the resume (a success at its answer), with that success's latency."""
    parts = []
    for kind in ("head", "canary"):
        mine = sorted((x for x in samples if x.kind == kind), key=lambda x: x.at)
        failed = [x for x in mine if not x.ok]
        if not failed:
            parts.append(f"{kind}: never failed")
            continue
        last = failed[-1]
        after = [x for x in mine if x.ok and x.at > last.at]
        text = f"{kind}: last failure started {1000 * (last.at - resumed):+.0f} ms ({last.error})"
        if after:
            answer = after[0].at + after[0].latency_ms / 1000
            text += (
                f", first success answered {1000 * (answer - resumed):+.0f} ms"
                f" (took {after[0].latency_ms:.0f} ms)"
            )
        parts.append(text)
    return "; ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--freeze", type=float, default=3.0)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    root = REPO / ".lab-bench-outage"
    with scratch_lab(root / "lab") as lab:
        env = lab.env_values()
        os.environ.update(env)
        authority = load_authority()
        work = root / "work"
        work.mkdir(parents=True, exist_ok=True)
        ours_err, ctk_err = [], []
        for trial in range(1, args.trials + 1):
            state_authority_serving_within(within_s=120)
            pids = [p for p in lab.pod_pids() if p]
            prober = Prober(authority)
            lead = 6.0  # chaos's start and its first hypotheses before the freeze
            if trial % 2:
                ctk, journal_path = start_ctk(work, lead + args.freeze + 5.0)
                prober.start()
            else:
                prober.start()
                ctk, journal_path = start_ctk(work, lead + args.freeze + 5.0)
            time.sleep(lead)
            for pid in pids:
                os.killpg(pid, signal.SIGSTOP)
            frozen_at = time.monotonic()
            time.sleep(max(0.0, args.freeze - (time.monotonic() - frozen_at)))
            for pid in pids:
                os.killpg(pid, signal.SIGCONT)
            truth_ms = (time.monotonic() - frozen_at) * 1000
            resumed = time.time()
            ctk.wait(timeout=120)
            prober.stop()
            ours = max(
                (w["ms"] for w in outage_windows(prober.snapshot(), time.time())), default=0.0
            )
            samples = ctk_samples(json.loads(journal_path.read_text()))
            theirs = max((w["ms"] for w in outage_windows(samples, time.time())), default=0.0)
            ours_err.append(ours - truth_ms)
            ctk_err.append(theirs - truth_ms)
            print(
                f"trial {trial}: truth {truth_ms:7.0f} ms | ours {ours:7.0f} ms "
                f"(error {ours - truth_ms:+5.0f}) | chaos run --hypothesis-strategy continuously "
                f"{theirs:7.0f} ms (error {theirs - truth_ms:+5.0f}, {len(samples)} hypotheses)",
                flush=True,
            )
            print(f"  ours, what closed the window: {_closing(prober.snapshot(), resumed)}")
        worst = max(ours_err, key=abs)
        print(
            f"ours: median |error| {statistics.median(abs(e) for e in ours_err):.0f} ms "
            f"(target <= 30), worst {worst:+.0f} ms (target <= 100); chaos continuously: median "
            f"|error| {statistics.median(abs(e) for e in ctk_err):.0f} ms, worst "
            f"{max(ctk_err, key=abs):+.0f} ms; {args.trials} trials of a {args.freeze:.1f} s freeze"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
