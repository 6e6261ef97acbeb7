"""Game days: a suite of experiments run in order under one cluster lease.

The game day takes the experiment lease itself (conditional renewals, as a
run's own: :class:`~harness.controls.lease.LeaseKeeper`) and hands its
identity to each ``chaos run`` (``FLYWHEEL_LEASE_IDENTITY``), so no other
experiment can slip in between. After each experiment it checks for a safety
breach (a fault left undone: rollback intent still recorded; the safety
control refused; the game day lost its lease) and, when one is found, undoes
it with ``recover`` and stops. All evidence is recorded by the experiments;
each run's Chaos Toolkit journal and log are written to a private temporary
directory and copied beside the evidence only after redaction; the game day
writes one summary report to ``FLYWHEEL_EVIDENCE_DIR/gamedays/``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from flywheel_chaos.kube.client import api_client
from flywheel_chaos.kube.intents import read_intents
from harness import assets
from harness.controls.lease import LeaseKeeper, LeaseRefused, holder_identity
from harness.controls.safety import GAMEDAY_ENV
from harness.errors import ConfigError
from harness.record.evidence import PASSING, canonical, evidence_dir
from harness.record.redact import Redactor, known_secrets
from harness.recover import recover


def suite_path(name: str) -> Path:
    """A suite file, or the name of a shipped one (``weekly``: ``gamedays/weekly.yaml``)."""
    path = Path(name)
    if path.exists() or "/" in name or name.endswith(".yaml"):
        return path
    return assets.gamedays() / f"{name}.yaml"


def load_suite(path: Path) -> dict[str, Any]:
    try:
        suite = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(
            f"game day suite {path} does not exist", "see gamedays/weekly.yaml"
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"game day suite {path} is not valid YAML: {exc}", "see gamedays/weekly.yaml"
        ) from exc
    if (
        not isinstance(suite, dict)
        or not isinstance(suite.get("experiments"), list)
        or not suite["experiments"]
    ):
        raise ConfigError(f"game day suite {path} lists no experiments", "add an experiments: list")
    base = (
        path.resolve().parent.parent
        if path.resolve().parent.name == "gamedays"
        else path.resolve().parent
    )
    missing = [e for e in suite["experiments"] if not (base / e).exists()]
    if missing:
        raise ConfigError(
            f"game day suite {path} names missing experiments: {', '.join(missing)}",
            f"paths are relative to {base}",
        )
    suite["_base"] = str(base)
    return suite


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


def run_experiment(
    experiment: Path, identity: str, timeout_s: float, workdir: Path, redactor: Redactor
) -> dict[str, Any]:
    """``chaos run`` of one experiment under the game day's lease; its journal and log are
    copied beside the evidence only after redaction. Returns its outcome."""
    name, t0 = experiment.stem, time.monotonic()
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
            str(experiment),
        ]
        try:
            code: int | None = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=timeout_s
            ).returncode
        except subprocess.TimeoutExpired:
            code = None
        try:
            journal_doc = json.loads(raw_journal.read_text())
        except (OSError, ValueError):
            journal_doc = None
        if journal_doc is not None:
            (workdir / f"{name}.journal.json").write_bytes(
                canonical(redactor.document(journal_doc))
            )
        if raw_log.exists():
            (workdir / f"{name}.log").write_text(redactor.text(raw_log.read_text(errors="replace")))
    flywheel = (journal_doc or {}).get("flywheel") or {}
    return {
        "exit": code,
        "seconds": round(time.monotonic() - t0, 1),
        "verdict": flywheel.get("verdict", "error"),
        "reasons": flywheel.get("reasons", ["no journal"]),
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


def run_gameday(
    path: Path, progress: Any = lambda m: None, namespace: str = "kube-system"
) -> dict[str, Any]:
    suite = load_suite(path)
    base = Path(suite["_base"])
    keeper = _take_lease(namespace)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = evidence_dir() / "gamedays" / f"{stamp}-{suite.get('name', path.stem)}"
    workdir.mkdir(parents=True, exist_ok=True)
    redactor = Redactor(known_secrets())
    results: list[dict[str, Any]] = []
    breach = None
    started = time.monotonic()
    try:
        for experiment in suite["experiments"]:
            name = Path(experiment).stem
            progress(f"{name}: running")
            timeout = float(suite.get("timeout_s", 900))
            outcome = {
                "experiment": experiment,
                **run_experiment(base / experiment, keeper.identity, timeout, workdir, redactor),
            }
            results.append(outcome)
            progress(f"{name}: {outcome['verdict']} in {outcome['seconds']}s")
            found = _breach(name, outcome, keeper)
            if found:
                breach = found
                progress(f"safety breach {breach}")
                if suite.get("stop_on_breach", True) or keeper.lost:
                    break
    finally:
        keeper.release()
    summary = {
        "suite": suite.get("name", path.stem),
        "started": stamp,
        "seconds": round(time.monotonic() - started, 1),
        "results": results,
        "breach": breach,
        "completed": breach is None and len(results) == len(suite["experiments"]),
        # a game day passes only when every run survived or passed, as chaos run's exit says
        "all_passed": breach is None
        and len(results) == len(suite["experiments"])
        and all(r["verdict"] in PASSING for r in results),
    }
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    summary["summary_file"] = str(workdir / "summary.json")
    return summary
