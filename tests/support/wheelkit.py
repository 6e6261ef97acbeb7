"""The package as a user installs it: the built wheel in a fresh virtual environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.labkit import REPO

__all__ = ["install_wheel"]


def _run(argv: list[str], cwd: Path, timeout_s: float) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, (
        f"{' '.join(argv[:4])}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    )


def install_wheel(root: Path) -> Path:
    """Build the wheel from this checkout, install it into a new venv under ``root`` (its
    dependencies from the package index or pip's cache, never this checkout); the venv's
    ``bin``."""
    dist = root / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist),
         str(REPO)],
        root,
        600,
    )  # fmt: skip
    (wheel,) = dist.glob("flywheel_chaos-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], root, 120)
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", str(wheel)],
        root,
        900,
    )  # fmt: skip
    return venv / "bin"
