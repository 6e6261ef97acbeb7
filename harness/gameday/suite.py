"""A game day suite: its file, its experiments, and how many runs of each (its plan).

A suite is YAML: ``name``, ``experiments`` (paths relative to the suite's project folder),
``timeout_s`` per run, ``stop_on_breach``, ``runs`` and ``guard``. ``runs`` is a number (each
experiment that many times) or ``policy``: each experiment as many times as the gate policy
wants of its fault (5 of each fault, 1 of each proof with the shipped ``gate.yaml``), so one
game day refreshes every row the gate reads. ``--runs`` overrides it. ``guard: true`` ends the
game day with a recorded pre-mutation guard (the gate's ``pre-mutation-guard`` row).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import assets
from harness.errors import ConfigError
from harness.record.policy import Policy

__all__ = ["Step", "experiment_fault", "load_suite", "plan", "runs_setting", "suite_path"]

HINT = "see the shipped suites: flywheel-chaos gameday --help"


@dataclass(frozen=True)
class Step:
    """One ``chaos run`` of the plan: run ``run`` of ``of`` of ``experiment``."""

    experiment: str
    path: Path
    fault: str
    run: int
    of: int

    @property
    def name(self) -> str:
        return Path(self.experiment).stem


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
        shipped = ", ".join(p.stem for p in sorted(assets.gamedays().glob("*.yaml")))
        raise ConfigError(
            f"game day suite {path} does not exist", f"a file, or a shipped suite: {shipped}"
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"game day suite {path} is not valid YAML: {exc}", HINT) from exc
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


def runs_setting(value: Any) -> int | str:
    """``runs`` of a suite or ``--runs``: a positive number or ``policy``."""
    if isinstance(value, str) and value.strip().lower() == "policy":
        return "policy"
    try:
        runs = int(value)
    except (TypeError, ValueError):
        runs = 0
    if runs < 1:
        raise ConfigError(
            f"runs must be a positive number or 'policy', not {value!r}",
            "for example --runs 5, or --runs policy (as many as the gate policy wants)",
        )
    return runs


def experiment_fault(path: Path) -> str:
    """The fault an experiment's evidence control records (its file name without it)."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return path.stem
    for control in document.get("controls") or []:
        provider = control.get("provider") or {}
        if provider.get("module") == "harness.controls.evidence":
            fault = (provider.get("arguments") or {}).get("fault")
            if isinstance(fault, str) and fault:
                return fault
    return path.stem


def plan(suite: dict[str, Any], runs: int | str | None, policy: Policy) -> list[Step]:
    """Every run of the game day, in order: each experiment's runs one after another."""
    setting = runs_setting(runs if runs is not None else suite.get("runs", 1))
    wanted = {r.fault: r.runs for r in policy.requirements}
    base = Path(suite["_base"])
    steps: list[Step] = []
    for experiment in suite["experiments"]:
        path = base / experiment
        fault = experiment_fault(path)
        count = wanted.get(fault, 1) if setting == "policy" else int(setting)
        steps += [Step(experiment, path, fault, run, count) for run in range(1, count + 1)]
    return steps
