"""Running a game day: the lease, each planned ``chaos run``, breaches, and the summary."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from flywheel_chaos import settings
from flywheel_chaos.kube.client import api_client
from flywheel_chaos.kube.intents import read_intents
from harness.controls.lease import LeaseKeeper, LeaseRefused, holder_identity
from harness.controls.safety import GAMEDAY_ENV
from harness.errors import ConfigError
from harness.gameday.finish import (
    continue_chain,
    gate_step,
    guard_step,
    junit_cases,
    publish_summary,
    write_json,
)
from harness.gameday.notify import notify
from harness.gameday.suite import Step, load_suite, plan
from harness.processes import stop_pid_group
from harness.record.evidence import PASSING, canonical, evidence_dir
from harness.record.junit import write_junit
from harness.record.policy import load_policy
from harness.record.redact import Redactor, known_secrets
from harness.record.store import load_store
from harness.recover import recover

__all__ = ["HEARTBEAT_S", "run_experiment", "run_gameday"]

Progress = Callable[[str], None]

HEARTBEAT_S = 30.0
"""How often a long run says it is still going."""


def _take_lease(namespace: str) -> LeaseKeeper:
    keeper = LeaseKeeper(
        client.CoordinationV1Api(api_client()),
        namespace,
        holder_identity("gameday-" + uuid.uuid4().hex[:8]),
        60,
    )
    try:
        keeper.acquire()
    except LeaseRefused as refused:
        raise ConfigError(
            f"another experiment holds the cluster lease: {refused.holder}",
            "wait for it, or run flywheel-chaos recover if it died",
        ) from refused
    keeper.start()
    return keeper


def _chaos(argv: list[str], env: dict[str, str], timeout_s: float, beat: Progress) -> int | None:
    """Run ``argv`` in its own process group; None when it outlived ``timeout_s`` (then it is
    stopped: SIGTERM, then SIGKILL)."""
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while True:
        left = timeout_s - (time.monotonic() - started)
        try:
            return process.wait(timeout=max(0.0, min(HEARTBEAT_S, left)))
        except subprocess.TimeoutExpired:
            if time.monotonic() - started >= timeout_s:
                stop_pid_group(process.pid, grace_s=10.0)
                process.wait(timeout=15)
                return None
            beat(f"still running ({(time.monotonic() - started) / 60:.1f} min)")


def run_experiment(
    step: Step, identity: str, timeout_s: float, workdir: Path, redactor: Redactor, beat: Progress
) -> dict[str, Any]:
    """``chaos run`` of one step under the game day's lease; its journal and log are copied
    beside the evidence only after redaction. Returns its outcome."""
    stem, t0 = f"{step.name}-{step.run}" if step.of > 1 else step.name, time.monotonic()
    env = {**os.environ, GAMEDAY_ENV: identity}
    with tempfile.TemporaryDirectory(prefix="flywheel-gameday-") as private:
        raw_journal, raw_log = Path(private) / "journal.json", Path(private) / "chaos.log"
        argv = [
            str(Path(sys.executable).parent / "chaos"),
            "--log-file",
            str(raw_log),
            "run",
            "--journal-path",
            str(raw_journal),
            str(step.path),
        ]
        code = _chaos(argv, env, timeout_s, beat)
        try:
            journal_doc = json.loads(raw_journal.read_text())
        except (OSError, ValueError):
            journal_doc = None
        if journal_doc is not None:
            (workdir / f"{stem}.journal.json").write_bytes(
                canonical(redactor.document(journal_doc))
            )
        if raw_log.exists():
            (workdir / f"{stem}.log").write_text(redactor.text(raw_log.read_text(errors="replace")))
    flywheel = (journal_doc or {}).get("flywheel") or {}
    return {
        "experiment": step.experiment,
        "fault": step.fault,
        "run": step.run,
        "of": step.of,
        "exit": code,
        "seconds": round(time.monotonic() - t0, 1),
        "verdict": flywheel.get("verdict", "error"),
        "reasons": flywheel.get("reasons", ["no journal"] if code is not None else ["timed out"]),
        "evidence": flywheel.get("evidence"),
    }


def _breach(name: str, outcome: dict[str, Any], keeper: LeaseKeeper) -> str | None:
    """A safety breach after ``name`` (undone with ``recover`` when faults were left)."""
    leftover = read_intents()
    if keeper.lost:
        return f"after {name}: the game day {keeper.lost}"
    if leftover or outcome["exit"] is None:
        recovered = recover(own_lease=keeper.identity)
        return f"after {name}: faults left undone; recovered: " + "; ".join(recovered)
    if outcome["verdict"] == "aborted":
        return f"after {name}: the run was aborted: " + "; ".join(outcome["reasons"])
    return None


def _so_far(results: list[dict[str, Any]]) -> str:
    counts = Counter(r["verdict"] for r in results)
    return ", ".join(f"{v} {n}" for v, n in sorted(counts.items()))


def _run_steps(
    steps: list[Step],
    suite: dict[str, Any],
    keeper: LeaseKeeper,
    workdir: Path,
    progress: Progress,
) -> tuple[list[dict[str, Any]], str | None]:
    redactor = Redactor(known_secrets())
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    timeout = float(suite.get("timeout_s", 900))
    for index, step in enumerate(steps, 1):
        label = f"[{index}/{len(steps)}] {step.name}" + (
            f" run {step.run}/{step.of}" if step.of > 1 else ""
        )
        elapsed = (time.monotonic() - started) / 60
        progress(f"{label}: running (elapsed {elapsed:.1f} min)")

        def beat(text: str, label: str = label) -> None:
            progress(f"{label}: {text}")

        outcome = run_experiment(step, keeper.identity, timeout, workdir, redactor, beat)
        results.append(outcome)
        progress(
            f"{label}: {outcome['verdict']} in {outcome['seconds']:.0f} s; "
            f"so far: {_so_far(results)}"
        )
        found = _breach(step.name, outcome, keeper)
        if found:
            progress(f"safety breach {found}")
            if suite.get("stop_on_breach", True) or keeper.lost:
                return results, found
    return results, None


def run_gameday(
    path: Path,
    progress: Progress = lambda m: None,
    namespace: str = "",
    runs: int | str | None = None,
    junit: Path | None = None,
) -> dict[str, Any]:
    """Run suite ``path``; see :mod:`harness.gameday`. Returns the summary."""
    suite = load_suite(path)
    steps = plan(suite, runs, load_policy(None))
    name = str(suite.get("name", path.stem))
    chain = continue_chain(evidence_dir(), progress)
    if chain["pulled"]:
        progress(f"continued the store's chain: {chain['pulled']} record(s) from {chain['store']}")
    keeper = _take_lease(namespace or settings.FLYWHEEL_LEASE_NAMESPACE.get())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = evidence_dir() / "gamedays" / f"{stamp}-{name}"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        results, breach = _run_steps(steps, suite, keeper, workdir, progress)
        guard = guard_step() if suite.get("guard") and breach is None else None
    finally:
        keeper.release()
    completed = breach is None and len(results) == len(steps)
    summary: dict[str, Any] = {
        "suite": name,
        "started": stamp,
        "seconds": round(time.monotonic() - started, 1),
        "planned": len(steps),
        "results": results,
        "breach": breach,
        "guard": guard,
        "completed": completed,
        # a game day passes only when every run survived or passed, as chaos run's exit says
        "all_passed": completed
        and all(r["verdict"] in PASSING for r in results)
        and (guard is None or bool(guard["ok"])),
    }
    progress("running the gate over the recorded evidence")
    summary["gate"] = gate_step()
    progress(f"gate: {summary['gate']['mode']} ({summary['gate']['reason']})")
    return _finish(summary, workdir, junit, progress)


def _finish(
    summary: dict[str, Any], workdir: Path, junit: Path | None, progress: Progress
) -> dict[str, Any]:
    files = {"summary.json": workdir / "summary.json", "gate.json": workdir / "gate.json"}
    write_json(files["gate.json"], summary["gate"])
    cases = junit_cases(summary)
    files["junit.xml"] = write_junit(workdir / "junit.xml", f"gameday {summary['suite']}", cases)
    if junit is not None:
        write_junit(junit, f"gameday {summary['suite']}", cases)
    url = settings.FLYWHEEL_NOTIFY_URL.get()
    summary["notified"] = notify(url, summary) if url else None
    summary["store"] = publish_summary(
        load_store(),
        workdir.name,
        {**files, "summary.json": write_json(files["summary.json"], summary)},
    )
    summary["summary_file"] = str(files["summary.json"])
    write_json(files["summary.json"], summary)
    if summary["store"]:
        progress(f"summary in the store: {summary['store']}")
    return summary
