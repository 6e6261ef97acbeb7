"""The repository itself: no run output is tracked."""

from __future__ import annotations

import fnmatch
import subprocess

from tests.support.s3kit import REPO

RUN_OUTPUT = (
    "*.journal.json",
    "journal.json",
    "chaostoolkit.log",
    "*chaostoolkit.log",
    ".lab-*",
    "evidence/*",
    ".lab/*",
    ".flywheel/*",
    "discovery.json",
    "report.html",
)


def test_no_tracked_file_is_run_output() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True, timeout=30
    ).stdout.splitlines()
    assert tracked, "git ls-files listed nothing: is this a checkout?"
    offending = [
        path
        for path in tracked
        if any(
            fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern)
            for pattern in RUN_OUTPUT
        )
    ]
    assert offending == []
