"""The built wheel installed in a fresh venv works with no source tree: its version, Chaos
Toolkit discovery, the shipped experiments and one of them run against SeaweedFS."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel_chaos import __version__
from tests.support.labkit import REPO
from tests.support.wheelkit import install_wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Path]:
    """A working directory with no checkout in it (and none above it)."""
    work = tmp_path / "work"
    work.mkdir()
    assert not (work / "experiments").exists()
    yield work


def _run(bin_dir: Path, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(bin_dir / argv[0]), *argv[1:]],
        cwd=cwd,
        env={**clean, "PATH": f"{bin_dir}:/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_the_installed_wheel_says_its_version_and_lists_its_experiments(
    installed: Path, elsewhere: Path
) -> None:
    assert _run(installed, ["flywheel-chaos", "--version"], elsewhere).strip().endswith(__version__)
    listed = json.loads(
        _run(installed, ["flywheel-chaos", "experiments", "list", "--json"], elsewhere)
    )
    names = {e["name"] for e in listed}
    assert names == {p.stem for p in (REPO / "experiments").glob("*.yaml")}
    for entry in listed:
        path = Path(entry["path"])
        assert REPO not in path.parents and path.is_file(), path  # the installed copy


def test_chaos_discover_finds_the_installed_extension(installed: Path, elsewhere: Path) -> None:
    _run(installed, ["chaos", "discover", "--no-install", "flywheel-chaos"], elsewhere)
    discovery = json.loads((elsewhere / "discovery.json").read_text())
    functions = {a["name"] for a in discovery["activities"]}
    assert {"state_key_readable", "drain_node", "delete_state_authority_pods"} <= functions


def test_the_installed_smoke_experiment_runs_green_against_seaweedfs(
    installed: Path, elsewhere: Path, authority_env: dict[str, str]
) -> None:
    path = _run(
        installed, ["flywheel-chaos", "experiments", "path", "state-authority-smoke"], elsewhere
    )
    _run(
        installed,
        ["chaos", "run", "--journal-path", str(elsewhere / "journal.json"), path.strip()],
        elsewhere,
        authority_env,
    )
    journal = json.loads((elsewhere / "journal.json").read_text())
    assert journal["status"] == "completed" and journal["deviated"] is False
