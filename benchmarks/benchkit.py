"""What the benchmarks share: one `chaos run` of an experiment and the record it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.record.evidence import record_files

REPO = Path(__file__).resolve().parent.parent
CHAOS = Path(sys.executable).parent / "chaos"


def run_experiment(
    experiment: str, env: dict[str, str], work: Path, name: str, timeout_s: float = 900
) -> tuple[dict[str, Any], int]:
    """``chaos run experiments/<experiment>.yaml`` with ``env`` on top of ours; its log and
    journal as ``work/<name>.log`` and ``.journal.json``. Returns the record this run wrote
    (only a new one: a run that recorded nothing says so, never shows the previous record)
    and the exit code."""
    evidence = Path(env["FLYWHEEL_EVIDENCE_DIR"])
    before = set(record_files(evidence))
    process = subprocess.run(
        [
            str(CHAOS),
            "--log-file",
            str(work / f"{name}.log"),
            "run",
            "--journal-path",
            str(work / f"{name}.journal.json"),
            str(REPO / "experiments" / f"{experiment}.yaml"),
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    new = [p for p in record_files(evidence) if p not in before]
    if not new:
        return {"verdict": "no record", "reasons": ["the run recorded nothing"]}, process.returncode
    record: dict[str, Any] = json.loads(new[0].read_text())
    return record, process.returncode
