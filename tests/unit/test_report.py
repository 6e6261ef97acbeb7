"""The HTML report, rendered and looked at in a real headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cli import main
from harness.record.evidence import new_record, write_record

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _record(directory: Path) -> Path:
    start = 1_800_000_000.0
    prober = {
        "started_at": start,
        "stopped_at": start + 60,
        "fault_started_at": start + 10,
        "fault_ended_at": start + 14,
        "head_samples": 540,
        "head_failures": 95,
        "longest_outage_ms": 10400.0,
        "budget_ms": 60000.0,
        "recovery_after_fault_ms": 9100.0,
        "recovered": True,
        "error_classes": {"endpoint-unreachable": 95},
        "outages": [
            {"start": start + 13.7, "end": start + 24.1, "ms": 10400.0, "open": False, "errors": {}}
        ],
    }
    return write_record(
        new_record(
            fault="pod-delete",
            verdict="survived",
            experiment="The state authority survives a restart of its pod",
            reasons=["steady state held; longest outage 10400 ms within budget"],
            prober=prober,
            integrity={"state_key_unchanged": True},
        ),
        directory,
    )


def test_the_report_page_is_self_contained_with_the_timeline(tmp_path: Path) -> None:
    path = _record(tmp_path)
    page = tmp_path / "report.html"
    assert main(["report", path.stem, "--dir", str(tmp_path), "--html", str(page)]) == 0
    text = page.read_text()
    assert "<svg" in text and 'class="outage"' in text and text.count('class="fault"') == 2
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in text


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)"
)
def test_the_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    path = _record(tmp_path)
    page = tmp_path / "report.html"
    main(["report", path.stem, "--dir", str(tmp_path), "--html", str(page)])
    shot = tmp_path / "report.png"
    base = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    subprocess.run(
        [*base, f"--screenshot={shot}", "--window-size=1100,900", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = subprocess.run(
        [*base, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert 'id="verdict">survived<' in dom
    assert "outage 10.4 s" in dom
