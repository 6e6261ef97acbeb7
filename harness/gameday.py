"""Game days: a suite of experiments run in order under one cluster lease.

The game day takes the experiment lease itself and hands its identity to
each ``chaos run`` (``FLYWHEEL_LEASE_IDENTITY``), so no other experiment can
slip in between. After each experiment it checks for a safety breach (a fault
left undone: rollback intent still recorded; or the safety control refused)
and, when one is found, undoes it with ``recover`` and stops. All evidence is
recorded by the experiments; the game day writes one summary report to
``FLYWHEEL_EVIDENCE_DIR/gamedays/``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from actions.cluster import api_client, read_intents
from harness.controls import safety
from harness.errors import ConfigError
from harness.record.evidence import evidence_dir
from harness.recover import recover


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


def run_gameday(
    path: Path, progress: Any = lambda m: None, namespace: str = "kube-system"
) -> dict[str, Any]:
    suite = load_suite(path)
    base = Path(suite["_base"])
    coordination = client.CoordinationV1Api(api_client())
    identity = safety.holder_identity("gameday-" + uuid.uuid4().hex[:8])
    taken, holder = safety.acquire(coordination, namespace, identity, 60)
    if not taken:
        raise ConfigError(
            f"another experiment holds the cluster lease: {holder}",
            "wait for it, or run flywheel-chaos recover if it died",
        )
    stop = threading.Event()
    renewer = threading.Thread(
        target=safety._renew_loop, args=(coordination, namespace, identity, 60, stop), daemon=True
    )
    renewer.start()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = evidence_dir() / "gamedays" / f"{stamp}-{suite.get('name', path.stem)}"
    workdir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    breach = None
    started = time.monotonic()
    try:
        for experiment in suite["experiments"]:
            name = Path(experiment).stem
            journal = workdir / f"{name}.journal.json"
            progress(f"{name}: running")
            t0 = time.monotonic()
            env = {**os.environ, "FLYWHEEL_LEASE_IDENTITY": identity}
            try:
                proc = subprocess.run(
                    [
                        str(Path(sys.executable).parent / "chaos"),
                        "--log-file",
                        str(workdir / f"{name}.log"),
                        "run",
                        "--journal-path",
                        str(journal),
                        str(base / experiment),
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=float(suite.get("timeout_s", 900)),
                )
                code: int | None = proc.returncode
            except subprocess.TimeoutExpired:
                code = None
            outcome: dict[str, Any] = {
                "experiment": experiment,
                "exit": code,
                "seconds": round(time.monotonic() - t0, 1),
            }
            try:
                flywheel = json.loads(journal.read_text()).get("flywheel") or {}
            except (OSError, ValueError):
                flywheel = {}
            outcome.update(
                verdict=flywheel.get("verdict", "error"),
                reasons=flywheel.get("reasons", ["no journal"]),
                evidence=flywheel.get("evidence"),
            )
            results.append(outcome)
            progress(f"{name}: {outcome['verdict']} in {outcome['seconds']}s")
            leftover = read_intents()
            aborted = outcome["verdict"] == "aborted"
            if leftover or code is None or aborted:
                breach = f"after {name}: " + (
                    "faults left undone; recovered: " + "; ".join(recover())
                    if leftover or code is None
                    else "the run was aborted: " + "; ".join(outcome["reasons"])
                )
                progress(f"safety breach {breach}")
                if suite.get("stop_on_breach", True):
                    break
    finally:
        stop.set()
        renewer.join(timeout=5)
        safety.release(coordination, namespace, identity)
    summary = {
        "suite": suite.get("name", path.stem),
        "started": stamp,
        "seconds": round(time.monotonic() - started, 1),
        "results": results,
        "breach": breach,
        "completed": breach is None and len(results) == len(suite["experiments"]),
    }
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    summary["summary_file"] = str(workdir / "summary.json")
    return summary
