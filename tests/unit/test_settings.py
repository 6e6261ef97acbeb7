"""Every FLYWHEEL_* / TOFU_* variable is declared once, documented, and read through settings."""

from __future__ import annotations

import re
from pathlib import Path

from flywheel_chaos import settings

REPO = Path(__file__).resolve().parents[2]
CODE = ("flywheel_chaos", "actions", "probes", "harness")
NAME = re.compile(r"\b((?:FLYWHEEL|TOFU)_[A-Z][A-Z0-9_]*)\b")
NOT_VARIABLES = {"TOFU_VERSION"}  # a constant's name, not an environment variable


def _sources() -> list[Path]:
    return [p for room in CODE for p in (REPO / room).rglob("*.py")]


def test_every_variable_the_code_or_an_experiment_names_is_declared_in_settings() -> None:
    declared = {v.name for v in settings.ALL}
    files = [
        *_sources(),
        *(REPO / "experiments").glob("*.yaml"),
        *(REPO / "gamedays").glob("*.yaml"),
    ]
    named = {m for f in files for m in NAME.findall(f.read_text())} - NOT_VARIABLES
    assert named - declared == set()


def test_each_variable_is_declared_once_and_documented_with_its_default() -> None:
    names = [v.name for v in settings.ALL]
    assert len(names) == len(set(names))
    page = (REPO / "docs" / "configuration.md").read_text()
    for variable in settings.ALL:
        assert f"`{variable.name}`" in page, variable.name
        assert variable.doc
        if not variable.internal and variable.default:
            row = next(line for line in page.splitlines() if f"`{variable.name}`" in line)
            assert f"`{variable.default}`" in row, variable.name


def test_no_module_reads_one_of_our_variables_by_its_literal_name() -> None:
    literal = re.compile(r"environ(?:\.get)?[\[(]\s*\"(?:FLYWHEEL|TOFU)_")
    offenders = [
        str(p.relative_to(REPO))
        for p in _sources()
        if p.name != "settings.py" and literal.search(p.read_text())
    ]
    assert offenders == []
