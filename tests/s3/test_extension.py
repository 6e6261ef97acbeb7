"""The package as a Chaos Toolkit extension: discovery, the smoke experiment, layering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.s3kit import REPO, subprocess_env

CHAOS = str(Path(sys.executable).parent / "chaos")


def test_chaos_discover_lists_every_probe_with_typed_arguments(tmp_path: Path) -> None:
    out = tmp_path / "discovery.json"
    result = subprocess.run(
        [
            CHAOS,
            "discover",
            "flywheel-chaos",
            "--no-install",
            "--no-system-info",
            "--discovery-path",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    activities = {a["name"]: a for a in json.loads(out.read_text())["activities"]}
    assert {
        "state_bucket_listed",
        "state_bucket_reachable",
        "state_key_readable",
        "canary_round_trip_ok",
        "versioning_enabled",
        "lock_exclusive",
        "state_authority_healthy",
    } <= set(activities)
    for activity in activities.values():
        assert activity["doc"], activity["name"]
        for argument in activity["arguments"]:
            assert argument.get("type") not in (None, "object"), (activity["name"], argument)
    lock = {a["name"]: a for a in activities["lock_exclusive"]["arguments"]}
    assert lock["race_writers"] == {"name": "race_writers", "default": 8, "type": "integer"}


@pytest.mark.parametrize(
    "path", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_experiment_passes_chaos_validate(path: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [CHAOS, "--log-file", str(tmp_path / "log"), "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.s3
def test_the_smoke_experiment_runs_green_against_the_server(
    authority_env: dict[str, str], tmp_path: Path
) -> None:
    journal = tmp_path / "journal.json"
    result = subprocess.run(
        [
            CHAOS,
            "--log-file",
            str(tmp_path / "log"),
            "run",
            "--journal-path",
            str(journal),
            str(REPO / "experiments" / "state-authority-smoke.yaml"),
        ],
        env=subprocess_env(authority_env),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(journal.read_text())
    assert record["status"] == "completed"
    assert record["deviated"] is False
    assert record["steady_states"]["before"]["steady_state_met"] is True


def test_probes_and_actions_never_import_harness() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEPT" in result.stdout


def test_chaos_discover_lists_the_production_activities_and_nothing_lab_only(
    tmp_path: Path,
) -> None:
    import importlib

    from actions import ACTION_MODULES, PROBE_MODULES

    out = tmp_path / "discovery.json"
    subprocess.run(
        [CHAOS, "discover", "flywheel-chaos", "--no-install", "--no-system-info",
         "--discovery-path", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=True,
    )  # fmt: skip
    listed = {(a["mod"], a["name"]) for a in json.loads(out.read_text())["activities"]}
    published = {
        (module, name)
        for module in (*ACTION_MODULES, *PROBE_MODULES)
        for name in importlib.import_module(module).__all__
    }
    assert listed == published
    assert not {name for _, name in listed} & {
        "lose_bucket_index",
        "restore_bucket_from_backup",
        "remove_scratch_bucket",
        "guard_reports_bucket_missing",
    }


def _activity_modules() -> list[str]:
    return sorted(
        f"{package}.{path.stem}"
        for package in ("actions", "probes")
        for path in (REPO / package).glob("*.py")
        if path.stem != "__init__"
    )


@pytest.mark.parametrize("module", _activity_modules())
def test_every_extension_module_holds_activities_only(module: str) -> None:
    import importlib
    import inspect

    loaded = importlib.import_module(module)
    exported = list(getattr(loaded, "__all__", []))
    assert exported, f"{module} has no activities (__all__ is empty)"
    public = {
        name
        for name, value in vars(loaded).items()
        if inspect.isfunction(value) and value.__module__ == module and not name.startswith("_")
    }
    assert set(exported) == public, "every public function is an activity, and only those"
    for name in exported:
        parameters = list(inspect.signature(getattr(loaded, name)).parameters)
        assert parameters[-2:] == ["configuration", "secrets"], (module, name)


def test_a_planted_upward_import_breaks_the_layering_contract(tmp_path: Path) -> None:
    import shutil

    for package in ("flywheel_chaos", "actions", "probes", "harness"):
        shutil.copytree(REPO / package, tmp_path / package)
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    errors = tmp_path / "flywheel_chaos" / "errors.py"
    errors.write_text(errors.read_text() + "\nimport harness.gameday  # planted\n")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "the shared library imports none of the extension and none of the harness BROKEN" in (
        " ".join(result.stdout.split())
    )
