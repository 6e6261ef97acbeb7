"""A small bake-off end to end in the lab: two candidates, one fault, two runs each, OpenTofu
in the loop; interrupted with Ctrl-C mid-way and resumed; its scorecard held against the
evidence records and its HTML page rendered in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.bakeoff.plan import Candidate
from harness.lab.cluster import Lab
from harness.lab.paths import LabPaths
from harness.record.evidence import verify
from harness.record.signing import load_verifier
from tests.support.labkit import BIN

pytestmark = pytest.mark.lab
CANDIDATES = ("interim-seaweedfs", "ha-seaweedfs")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _bakeoff(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "flywheel-chaos"), "bakeoff", *args],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def bakeoff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bake-off stopped with Ctrl-C during its first fault run, then resumed to the end."""
    out = tmp_path_factory.mktemp("bakeoff")
    args = [a for c in CANDIDATES for a in ("--candidate", c)]
    first = _bakeoff([*args, "--fault", "pod-delete", "--runs", "2", "--out", str(out)])
    assert first.stderr is not None
    deadline = time.monotonic() + 600
    for line in first.stderr:
        if "pod-delete run 1" in line:
            break
        assert time.monotonic() < deadline, "the first fault run never started"
    os.killpg(first.pid, signal.SIGINT)  # Ctrl-C reaches the bake-off, not the run in flight
    _, rest = first.communicate(timeout=600)
    assert first.returncode == 130, rest[-3000:]
    lines = [
        json.loads(x) for x in (out / "interim-seaweedfs" / "runs.jsonl").read_text().splitlines()
    ]
    assert [(x["fault"], x["index"]) for x in lines][-1] == ("pod-delete", 1)
    lab = Lab(LabPaths(out / "interim-seaweedfs" / "lab"))
    assert lab.is_up(), "the interrupted candidate's lab is left up for --resume"
    nodes = json.loads(lab.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert not [n for n in nodes if n["spec"].get("unschedulable")], "nodes restored"
    second = _bakeoff(["--resume", str(out)])
    _, errors = second.communicate(timeout=1200)
    assert second.returncode in (0, 1), errors[-3000:]
    return out


def test_no_run_is_counted_twice_or_lost_across_ctrl_c_and_resume(bakeoff: Path) -> None:
    for name in CANDIDATES:
        lines = [json.loads(x) for x in (bakeoff / name / "runs.jsonl").read_text().splitlines()]
        seen = Counter((x["fault"], x["index"]) for x in lines)
        assert seen == Counter({("guard", 1): 1, ("backup-restore", 1): 1, ("tofu-noop-plan", 1): 1,
                                ("pod-delete", 1): 1, ("pod-delete", 2): 1}), seen  # fmt: skip
        assert all(x["record"] for x in lines)
        assert not Lab(LabPaths(bakeoff / name / "lab")).is_up(), (
            "a finished candidate's lab is down"
        )


def _from_records(directory: Path) -> dict[str, Any]:
    """The pod-delete numbers recomputed here from the verified evidence records."""
    verifier = load_verifier(directory / "lab" / "keys" / "evidence.pub")
    records = [v.record for v in verify(directory / "evidence", verifier) if v.ok and v.record]
    runs = [r for r in records if r.get("fault") == "pod-delete" and r.get("kind") == "experiment"]
    for r in runs:
        # a run whose steady state failed before the fault (seen: ha-seaweedfs still answering
        # NoSuchKey after the run before it) never reached the method, where OpenTofu plans;
        # every run that did has its plans recorded
        failed_before = any(f.get("phase") == "before" for f in r.get("steady_failures") or [])
        assert r.get("tofu") is not None or (r["verdict"] == "error" and failed_before), (
            r["verdict"],
            r.get("steady_failures"),
        )
    planned = [r for r in runs if r.get("tofu") is not None]
    return {
        "runs": len(runs),
        "survived": sum(1 for r in runs if r["verdict"] == "survived"),
        "max": round(max(r["prober"]["longest_outage_ms"] for r in runs) / 1000, 3),
        "phantom_samples": sum(r["prober"]["state_key_missing"] for r in runs),
        "tofu": {k: sum(r["tofu"][k.replace("-", "_")] for r in planned) for k in ("no-op", "failed", "phantom")},
    }  # fmt: skip


def test_the_scorecard_is_the_evidence_records_numbers_with_opentofu_in_the_loop(
    bakeoff: Path,
) -> None:
    card = json.loads((bakeoff / "scorecard.json").read_text())
    assert card["decision"]
    by_name = {c["candidate"]: c for c in card["candidates"]}
    for name in CANDIDATES:
        stats = by_name[name]["faults"]["pod-delete"]
        expected = _from_records(bakeoff / Candidate(name).slug)
        assert (
            (stats["runs"], stats["survived"])
            == (expected["runs"], expected["survived"])
            == (2, stats["survived"])
        )
        assert stats["outage_s"]["max"] == expected["max"]
        assert stats["phantom_samples"] == expected["phantom_samples"]
        assert stats["tofu_plans"] == expected["tofu"]
        assert expected["tofu"]["no-op"] > 0, "OpenTofu planned during the faults"
        assert by_name[name]["gate"]["exit"] == 1  # two runs are not the gate's five
    ha, interim = by_name["ha-seaweedfs"], by_name["interim-seaweedfs"]
    if bool(ha["phantoms"]) != bool(interim["phantoms"]):
        # a phantom (seen: ha-seaweedfs's gateway answering NoSuchKey during a restart)
        # ranks a candidate below every one that never showed one, whatever else it did
        assert (ha["rank"] < interim["rank"]) == (not ha["phantoms"]), ha["phantoms"]
    else:
        # the interim shares its volume on a restart: never above the replicated candidate
        assert ha["rank"] < interim["rank"]


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[tuple[str, str], dict[str, str]] = {}
        self.svgs = 0
        self._row: tuple[str, str] | None = None
        self._key: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "svg":
            self.svgs += 1
        if tag == "tr" and found.get("data-candidate"):
            self._row = (str(found["data-candidate"]), str(found["data-fault"]))
            self.rows[self._row] = {}
        if tag == "td" and self._row and found.get("data-k"):
            self._key = found["data-k"]

    def handle_data(self, data: str) -> None:
        if self._row and self._key:
            self.rows[self._row][self._key] = data.strip()
            self._key = None


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)"
)
def test_the_html_scorecard_renders_in_chromium_with_its_charts_and_the_same_numbers(
    bakeoff: Path, tmp_path: Path
) -> None:
    card = json.loads((bakeoff / "scorecard.json").read_text())
    dom = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         f"file://{bakeoff / 'scorecard.html'}"],
        capture_output=True, text=True, timeout=120, check=True,
        env={**os.environ, "HOME": str(tmp_path)},
    ).stdout  # fmt: skip
    cells = _Cells()
    cells.feed(dom)
    assert cells.svgs >= 3 and 'class="chart outages"' in dom and 'class="plan no-op"' in dom
    assert card["decision"] in dom.replace("&amp;", "&")
    for candidate in card["candidates"]:
        stats = candidate["faults"]["pod-delete"]
        row = cells.rows[(candidate["candidate"], "pod-delete")]
        assert int(row["survived"]) == stats["survived"] and int(row["runs"]) == stats["runs"]
        assert row["max"] == str(stats["outage_s"]["max"])
        assert int(row["tofu_noop"]) == stats["tofu_plans"]["no-op"]
