"""JUnit XML, the one writer ``bakeoff``, ``gameday`` and ``gate`` share (``--junit FILE``).

One ``<testsuite>`` per call with one ``<testcase>`` per run or requirement; a case fails
with its reasons, or is skipped with why. CI systems read it where teams look.
"""

from __future__ import annotations

import datetime as dt
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Case", "write_junit"]


@dataclass(frozen=True)
class Case:
    name: str
    classname: str
    seconds: float = 0.0
    failure: str | None = None
    skipped: str | None = None
    output: str = ""


def write_junit(path: Path, suite: str, cases: Iterable[Case]) -> Path:
    """Write ``cases`` as one JUnit test suite to ``path`` (atomically)."""
    listed = list(cases)
    root = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(listed)),
        failures=str(sum(1 for c in listed if c.failure is not None)),
        skipped=str(sum(1 for c in listed if c.skipped is not None)),
        time=f"{sum(c.seconds for c in listed):.3f}",
        timestamp=dt.datetime.now(dt.UTC).isoformat(),
    )
    for case in listed:
        element = ET.SubElement(
            root, "testcase", name=case.name, classname=case.classname, time=f"{case.seconds:.3f}"
        )
        if case.failure is not None:
            failure = ET.SubElement(element, "failure", message=case.failure[:500])
            failure.text = case.failure
        elif case.skipped is not None:
            ET.SubElement(element, "skipped", message=case.skipped[:500])
        if case.output:
            ET.SubElement(element, "system-out").text = case.output
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)
    return path
