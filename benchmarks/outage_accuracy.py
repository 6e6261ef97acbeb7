"""How exactly does the survival prober measure an outage? Inject one of known length.

In a scratch lab, freezes the state authority's S3 process (SIGSTOP of its
process group) for exactly --freeze seconds, then resumes it, while
  ours  the survival prober (HEAD every 100 ms, windows from sample times)
  ctk   what Chaos Toolkit's `--hypothesis-strategy continuously` sees at its
        documented cadence: one HEAD of the state key (a single attempt, no
        retries, 1 s connect and read timeouts, as a plain probe makes it), then
        1.0 s between iterations (its default), turned into windows the same
        way (it computes none itself). Not our probe: its retries and 5 s
        deadline would wait out a 3 s freeze by construction.
sample the same endpoint. Prints each one's measured longest outage, its
error against the truth, and the ratio of the errors.

    python benchmarks/outage_accuracy.py [--freeze 3.0] [--trials 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import threading
import time
from pathlib import Path

import botocore.exceptions

from flywheel_chaos.s3.authority import load_authority
from flywheel_chaos.s3.client import new_s3_client
from flywheel_chaos.s3.errors import classify
from harness.controls.prober import Prober, Sample, outage_windows
from harness.lab.testing import scratch_lab
from probes.state_authority import state_authority_serving_within

REPO = Path(__file__).resolve().parent.parent


def ctk_loop(authority, stop: threading.Event, samples: list[Sample]) -> None:  # type: ignore[no-untyped-def]
    client = new_s3_client(authority.with_overrides(connect_timeout_s=1.0, read_timeout_s=1.0))
    while not stop.is_set():
        started_wall, started = time.time(), time.monotonic()
        try:
            client.head_object(Bucket=authority.bucket, Key=authority.key)
            samples.append(Sample("head", started_wall, True, (time.monotonic() - started) * 1000))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            samples.append(
                Sample(
                    "head",
                    started_wall,
                    False,
                    (time.monotonic() - started) * 1000,
                    classify(exc, authority).error_class,
                )
            )
        stop.wait(1.0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--freeze", type=float, default=3.0)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    root = REPO / ".lab-bench-outage"
    with scratch_lab(root) as lab:
        env = lab.env_values()
        os.environ.update(env)
        authority = load_authority()
        ours_err, ctk_err = [], []
        for trial in range(1, args.trials + 1):
            state_authority_serving_within(within_s=120)
            pids = [p for p in lab.pod_pids() if p]
            prober = Prober(authority)
            ctk_samples: list[Sample] = []
            stop = threading.Event()
            ctk = threading.Thread(
                target=ctk_loop, args=(authority, stop, ctk_samples), daemon=True
            )
            prober.start()
            ctk.start()
            time.sleep(2.0)
            for pid in pids:
                os.killpg(pid, signal.SIGSTOP)
            frozen_at = time.monotonic()
            time.sleep(max(0.0, args.freeze - (time.monotonic() - frozen_at)))
            for pid in pids:
                os.killpg(pid, signal.SIGCONT)
            truth_ms = (time.monotonic() - frozen_at) * 1000
            time.sleep(4.0)
            stop.set()
            prober.stop()
            ctk.join(timeout=10)
            ours = max(
                (w["ms"] for w in outage_windows(prober.snapshot(), time.time())), default=0.0
            )
            theirs = max((w["ms"] for w in outage_windows(ctk_samples, time.time())), default=0.0)
            ours_err.append(abs(ours - truth_ms))
            ctk_err.append(abs(theirs - truth_ms))
            print(
                f"trial {trial}: truth {truth_ms:7.0f} ms | ours {ours:7.0f} ms (error {ours - truth_ms:+5.0f}) "
                f"| chaos-toolkit-style {theirs:7.0f} ms (error {theirs - truth_ms:+5.0f})"
            )
        print(
            f"median |error|: ours {statistics.median(ours_err):.0f} ms (target <= 150 ms), "
            f"chaos-toolkit-style {statistics.median(ctk_err):.0f} ms; "
            f"ratio {statistics.median(ctk_err) / max(1.0, statistics.median(ours_err)):.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
