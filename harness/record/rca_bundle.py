"""An RCA bundle being collected: its files, its notes, its deadline, and log tails."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel_chaos import diskview
from harness.record.redact import Redactor

LOG_TAIL_LINES = 200
LOG_TAIL_BYTES = 64 * 1024
MAX_BYTES = 20 * 1024 * 1024
DEADLINE_S = 60.0
DISK_ENTRIES = diskview.ENTRIES
DEBUG_POD_DEADLINE_S = 30.0
"""How long one read-only debug pod may take, from its creation to its listing."""


@dataclass
class Bundle:
    """What is collected, file by file, with the notes of what was cut or skipped."""

    files: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    deadline_s: float = DEADLINE_S

    def out_of_time(self) -> bool:
        return time.monotonic() - self.started > self.deadline_s

    def add_json(self, name: str, document: Any, redactor: Redactor) -> None:
        self.files[name] = json.dumps(redactor.document(document), indent=2, default=str).encode()

    def fit(self, max_bytes: int) -> None:
        """Cut the logs, largest first, until the bundle fits in ``max_bytes`` (noted)."""
        total = sum(len(v) for v in self.files.values())
        logs = sorted(
            (n for n in self.files if n.startswith("k8s/logs/")), key=lambda n: -len(self.files[n])
        )
        for name in logs:
            if total <= max_bytes:
                break
            total -= len(self.files[name])
            del self.files[name]
            self.notes.append(f"{name}: cut, the bundle's {max_bytes} byte bound was reached")

    def write(self, destination: Path) -> bytes:
        """Write the bundle as a ``.tar.gz`` (atomically); its bytes."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, data in sorted(self.files.items()):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
                tar.addfile(info, io.BytesIO(data))
        data = buffer.getvalue()
        tmp = destination.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, destination)
        return data

    def step(self, what: str, fn: Callable[[], None]) -> None:
        if self.out_of_time():
            self.notes.append(f"{what}: skipped, the {self.deadline_s:g} s deadline was reached")
            return
        try:
            fn()
        except Exception as exc:  # an RCA never fails the run: say what is missing
            self.notes.append(f"{what}: not collected ({type(exc).__name__}: {exc})")


def tail(text: str) -> str:
    lines = text.splitlines()[-LOG_TAIL_LINES:]
    joined = "\n".join(lines)
    return joined[-LOG_TAIL_BYTES:]


def split_restarts(text: str) -> tuple[str, str]:
    """The lab's container log holds every start: (current, previous) run."""
    marker = "--- start "
    parts = text.split(marker)
    if len(parts) <= 1:
        return text, ""
    current = marker + parts[-1]
    previous = marker + parts[-2] if len(parts) > 2 else ""
    return current, previous
